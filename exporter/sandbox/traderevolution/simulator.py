"""Simulator of the TraderEvolution Back-Office REST API (``/proftrading/rest``).

A deterministic, in-process test double for the exporter. It serves bare
JSON arrays with blind limit/offset paging, Bearer tokens with a rotating
refresh token, the per-(token, collection) rate limiter that blocks a token
after repeated violations, saved reports (``{"headers", "data", "total"}``)
whose ids differ per installation, and injected faults.

Data is a pure function of ``seed``, the size knobs and the *virtual clock*.
A timeline spanning ``history_days`` before ``sim_start`` to ``future_days``
after it is generated up front (:mod:`.data`); the API only shows what happened
at or before the clock. ``POST /_sim/advance?seconds=N`` moves the clock forward,
which reveals new fills and operations and closes positions under the same
``positionid``.

Time sources (one choice, documented here):

* Token lifetimes always run on real monotonic time plus an offset, and
  ``/_sim/advance`` adds its seconds to that offset. So a token with
  ``access_ttl_s=1`` expires after one real second, and advancing the clock
  by ``access_ttl_s`` also expires it. ``clock_real_time`` is accepted for
  compatibility with other simulators' configs and changes nothing.
* Rate-limit buckets and token blocks use real monotonic time only.
* The data clock moves only through ``/_sim/advance`` (or :meth:`advance`).
  ``/_sim/reset`` puts the clock back to ``sim_start`` and forgets tokens,
  rate-limit state, counters and the fault sequence (requests still running
  keep their ``in_flight`` slot).

Order of checks on every API request (:mod:`.gates`, then :mod:`.routes`): token,
block/rate limit, fault, route/method, validation; latency is added to every
answer, errors included. ``/v2/api-docs`` and ``/swagger-ui.html`` skip the
token, limiter and faults. A bare ``Authorization: <token>`` (no ``Bearer``) is
refused unless ``accept_raw_token`` is set.

Simplifications: ``isTotal`` sums every numeric column (ids and prices
too) over all rows that match the filters, before paging; report latency
(``report_latency_ms_per_1000_rows``) is charged for the rows of the page
served; filters other than ``accountId``, ``login`` and ``assetName`` are
accepted and ignored; ``hh`` in a date format is the 12-hour clock as in
Java, ``DD``/``YYYY`` mean day of month/year as in moment.js.

Report time cells are the true instants written as wall-clock times in
``report_timezone`` (an IANA name, default UTC), as a back office running on
local time writes them; JSON entities keep epoch milliseconds. ``events_at``
places a deposit and a position opening of the first account at chosen
instants (say, both sides of a daylight-saving change), and
:meth:`TraderEvolutionSimulator.expected_trade_instants` gives the true
instant of every fill.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web

from ..base import RequestStats, SimControls, drop_connection, run_simulator_in_thread
from .config import BASE_PATH, TraderEvolutionSimConfig
from .data import World
from .entities import account_json, op_json, user_json
from .gates import ApiError, Gates, Reply, error_response, to_response
from .reports import SPEC_BY_NAME, Reports, assign_report_ids
from .routes import Api
from .values import EPOCH, compile_time_format, dumps

# Documentation routes: no token, no limits, no faults.
_DOCS = ("v2/api-docs", "swagger-ui.html")


class TraderEvolutionSimulator:
    """Deterministic TraderEvolution BO API: data, expected values and the aiohttp app."""

    def __init__(self, config: TraderEvolutionSimConfig | None = None) -> None:
        self.config = config or TraderEvolutionSimConfig()
        self.world = World(self.config)
        self._reports = Reports(self.world, compile_time_format(self.config.report_datetime_format,
                                                                self.config.zone))
        self._report_ids = assign_report_ids(self.config)
        spec_by_id = {rid: SPEC_BY_NAME[name] for name, rid in self._report_ids.items()}
        self._lock = threading.Lock()
        self._stats = RequestStats()
        self._gates = Gates(self.config, self._lock, self._stats)
        self._api = Api(self.config, self.world, self._reports, self._report_ids, spec_by_id, self._gates,
                        self._lock, lambda: self._clock_ms)
        self._controls = SimControls(self.state, self.advance, self.reset, encode=dumps,
                                     bad_request=lambda _message: error_response(ApiError(400)))
        self._clock_ms = self.world.start_ms

    # -- lifecycle --------------------------------------------------------

    def reset(self) -> None:
        """Back to the start: clock, tokens, limiter, counters and fault sequence."""
        with self._lock:
            self._clock_ms = self.world.start_ms
            self._gates.reset()
            self._stats.reset()  # requests still running keep their in_flight slot

    def advance(self, seconds: float) -> None:
        """Move the data clock forward; token lifetimes see the same jump."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        with self._lock:
            self._clock_ms += round(seconds * 1000)
            self._gates.tokens.offset_s += seconds

    @property
    def clock_ms(self) -> int:
        return self._clock_ms

    @property
    def report_ids(self) -> dict[str, int]:
        """Report name -> id as served by this installation."""
        return dict(self._report_ids)

    # -- state ------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Counters and clock, as served by ``GET /_sim/state``."""
        with self._lock:
            clock = self._clock_ms
            w, gates = self.world, self._gates
            snapshot = w.snapshot(clock)  # cached per clock value
            return {
                "clock": datetime.fromtimestamp(clock / 1000, UTC).isoformat(),
                "clock_ms": clock,
                "counts": {
                    "users": len(w.users),
                    "accounts": len(w.accounts),
                    "positions": bisect.bisect_right(w.position_open_times, clock),
                    "open_positions": sum(len(s["open"]) for s in snapshot.values()),
                    "fills": bisect.bisect_right(w.fill_times, clock),
                    "operations": bisect.bisect_right(w.op_times, clock),
                },
                **self._stats.snapshot(),
                "rate_limited": gates.rate_limited,
                "logins": gates.tokens.logins,
                "refreshes": gates.tokens.refreshes,
                "blocked_tokens": gates.limiter.blocked_count(time.monotonic()),
                "blocks_total": gates.limiter.blocks,
                "report_ids": dict(self._report_ids),
            }

    # -- expected data (what the API serves at the current clock) ----------

    def expected_accounts(self) -> list[dict[str, Any]]:
        """``GET /accounts`` paged to the end: every account, ascending id."""
        return [account_json(a) for a in self.world.accounts]

    def expected_users(self) -> list[dict[str, Any]]:
        return [user_json(u) for u in self.world.users]

    def expected_account_operations(
        self, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[dict[str, Any]]:
        """``GET /accountOperations`` paged to the end, ascending id, money as Decimal."""
        with self._lock:
            ops = self.world.visible_ops(None, start_ms, end_ms, self._clock_ms)
        return [op_json(op) for op in ops]

    def expected_report(
        self,
        name: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        *,
        account_id: int | None = None,
        login: str | None = None,
        asset_name: str = "USD",
    ) -> tuple[list[str], list[list[Any]]]:
        """Headers and every row (array shape, money as Decimal) of a report run: the contract's
        columns only (the ``report_new_column`` drift column is left out; see
        :func:`~.reports.new_column_value`)."""
        spec = SPEC_BY_NAME[name]
        with self._lock:
            accounts = self.world.filter_accounts(account_id, login)
            query = self._reports.query(start_ms, end_ms, accounts, asset_name, self._clock_ms)
            rows = [self._reports.row(spec, it, query) for it in self._reports.items(spec, query)]
        return [c for c, _ in spec.columns], rows

    def expected_trade_instants(
        self, start_ms: int | None = None, end_ms: int | None = None
    ) -> dict[int, datetime]:
        """Trade id -> true UTC instant of every fill the Trades Report serves for the window (its
        ``time`` cell is that instant written in ``report_timezone``)."""
        with self._lock:
            query = self._reports.query(start_ms, end_ms, None, None, self._clock_ms)
            fills = self.world.visible_fills(None, query.start, query.end, query.clock)
        return {f.trade_id: EPOCH + timedelta(milliseconds=f.t) for f in fills}

    # -- HTTP: app and pipeline -------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", BASE_PATH, self._entry)
        app.router.add_route("*", BASE_PATH + "/{tail:.*}", self._entry)
        app.router.add_route("*", "/_sim/{name:.*}", self._controls.handle)
        return app

    async def _entry(self, request: web.Request) -> web.StreamResponse:
        """Every API request: count it, run the checks, add latency, send."""
        with self._lock:
            seq = self._stats.enter()
        try:
            reply = await self._process(request, seq)
            delay = self._gates.latency_s(seq) + reply.extra_delay_s
            if delay > 0:
                await asyncio.sleep(delay)
            if reply.drop:
                self._answered("drop")
                return drop_connection(request)
            response = to_response(reply)
            self._answered(reply.status)  # before sending: visible once received
            await response.prepare(request)
            await response.write_eof()
            return response
        finally:
            with self._lock:
                self._stats.leave()

    def _answered(self, status: int | str) -> None:
        with self._lock:
            self._stats.answered(status)

    async def _process(self, request: web.Request, seq: int) -> Reply:
        tail = request.match_info.get("tail", "")
        try:
            if tail in _DOCS:
                return self._api.dispatch(tail, request, None)
            body = await self._read_login_body(request) if tail == "auth/token" else None
            caller = self._gates.caller(request, tail, body)
            self._gates.check_rate(caller, tail.split("/", 1)[0])
            fault = self._gates.fault(seq)
            if fault is not None:
                return fault
            return self._api.dispatch(tail, request, body)
        except ApiError as err:
            return self._gates.error_reply(err)

    @staticmethod
    async def _read_login_body(request: web.Request) -> Any:
        if request.method != "POST":
            return None
        try:
            return orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return None


# --------------------------------------------------------------------------- serving


@contextmanager
def run_in_thread(app: web.Application, host: str = "127.0.0.1", port: int = 0,
                  *, ssl_context: ssl.SSLContext | None = None) -> Iterator[str]:
    """Serve ``app`` on its own event loop in a daemon thread; yield the root URL (``https://``
    with ``ssl_context``)."""
    with run_simulator_in_thread(app, host, port, ssl_context=ssl_context) as root:
        yield root


@contextmanager
def te_simulator(
    config: TraderEvolutionSimConfig | None = None, **overrides: Any
) -> Iterator[tuple[str, TraderEvolutionSimulator]]:
    """Run a simulator in a background thread; yield ``(base_url, simulator)``."""
    cfg = dataclasses.replace(config or TraderEvolutionSimConfig(), **overrides)
    simulator = TraderEvolutionSimulator(cfg)
    with run_in_thread(simulator.make_app()) as root:
        yield root + BASE_PATH, simulator
