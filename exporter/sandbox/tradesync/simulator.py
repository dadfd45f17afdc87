"""The Tradesync simulator: the data of :mod:`.data` served over HTTP at a virtual clock.

Worked example::

    sim = TradesyncSimulator(TradesyncSimConfig(accounts=3, trades_per_account=2))
    with run_simulator_in_thread(sim.make_app) as base_url:
        # GET {base_url}/accounts?order=asc&limit=2  (HTTP Basic sim-key:sim-secret)
        # -> {"result":"success","status":200,
        #     "meta":{"count":2,"limit":2,"order":"asc","last_id":1241403},"data":[...]}
        ...
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
from aiohttp import web

from ..base import ChaosPlanner, RequestStats, SimControls, run_simulator_in_thread
from .columns import epoch, iso
from .config import TradesyncSimConfig
from .data import TradesyncData
from .gates import Gates, Reject
from .routes import AccountPageSource, ListQuery, Routes

DEFAULT_PAGE_CACHE_BYTES = 64 * 2**20

SIMULATOR_KEY: web.AppKey[TradesyncSimulator] = web.AppKey("tradesync_simulator")


class TradesyncSimulator:
    """The Tradesync API over a deterministic data set and a virtual clock.

    Data knobs (seed, sizes, huge_values, new_accounts_per_hour) are read once; behaviour knobs
    (maintenance, faults, latency, rate limit, limits, code case, keys) are read from ``config``
    on every request so tests may flip them.
    """

    def __init__(self, config: TradesyncSimConfig, page_cache_bytes: int = DEFAULT_PAGE_CACHE_BYTES) -> None:
        self.config = replace(config)
        self._data = TradesyncData(self.config)
        self._routes = Routes(self._data, self.config, page_cache_bytes)
        self._gates = Gates(self.config)
        self._stats = RequestStats()
        self._controls = SimControls(self.state, self.advance, self.reset)
        self._clock = self._data.start

    # ---- clock and state ----------------------------------------------------

    @property
    def clock(self) -> datetime:
        return datetime.fromtimestamp(self._clock, UTC)

    def advance(self, seconds: float) -> None:
        """Move the virtual clock forward (whole seconds)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._clock += int(seconds)

    def reset(self) -> None:
        """Back to ``sim_start`` with fresh counters, so fault sequences replay."""
        self._clock = self._data.start
        self._stats.reset()
        self._gates.limiter.reset()

    def state(self) -> dict[str, Any]:
        clock = self._clock
        return {"clock": iso(clock), "accounts": self._data.visible_accounts(clock),
                "trades": self._data.visible_trades(clock), **self._stats.snapshot()}

    def _clock_of(self, clock: datetime | None) -> int:
        return self._clock if clock is None else epoch(clock)

    # ---- public data API ----------------------------------------------------

    def account_ids(self, clock: datetime | None = None) -> np.ndarray:
        """Ids of the accounts visible at ``clock`` (default: now), ascending."""
        return self._data.ids[: self._data.visible_accounts(self._clock_of(clock))].copy()

    def expected_accounts(self, clock: datetime | None = None) -> Iterator[dict[str, Any]]:
        """The account objects the API serves at ``clock``, ascending id, money as ``Decimal``."""
        at = self._clock_of(clock)
        n = self._data.visible_accounts(at)
        for lo in range(0, n, 1000):
            yield from self._data.account_rows(np.arange(lo, min(lo + 1000, n)), at, as_decimal=True)

    def expected_trades(self, clock: datetime | None = None) -> Iterator[dict[str, Any]]:
        """The trade rows the API serves at ``clock``, ascending id, money as ``Decimal``."""
        at = self._clock_of(clock)
        view = self._data.view(at)
        if view is None:
            return
        for lo in range(0, view.n_visible, 1000):
            yield from self._data.trade_rows(np.arange(lo, min(lo + 1000, view.n_visible)), view, as_decimal=True)

    # ---- account pages: the benchmark's hooks -------------------------------

    @property
    def account_pages(self) -> AccountPageSource | None:
        """Where ``/accounts`` pages come from before the simulator renders them itself.

        A callable ``(query, clock) -> bytes | None``: the page body, byte-identical to
        :meth:`render_accounts_page`, or None to let the simulator render it. A benchmark sets it
        to serve pre-rendered rows, so the simulator's CPU does not weigh on the client measured.
        Pages in the page cache (see :meth:`warm`) are served before it is asked.
        """
        return self._routes.account_pages

    @account_pages.setter
    def account_pages(self, source: AccountPageSource | None) -> None:
        self._routes.account_pages = source

    def render_accounts_page(self, query: ListQuery, clock: datetime | None = None) -> bytes:
        """The simulator's own body of an ``/accounts`` page at ``clock`` (default: now), bypassing
        the page cache and :attr:`account_pages`."""
        return self._routes.accounts_page(query, self._clock_of(clock))[0]

    def warm(self, max_bytes: int | None = None) -> int:
        """Pre-render every ``/accounts?order=asc&limit=1000`` page at the current clock.

        Pages stop being cached once ``max_bytes`` (default: the cache budget) is
        reached. Returns the number of pages rendered into the cache.
        """
        cache = self._routes.cache
        if max_bytes is not None and max_bytes > cache.max_bytes:
            cache.max_bytes = max_bytes
        clock, limit = self._clock, min(1000, self.config.max_limit)
        self._data.view(clock)  # trades-mode aggregates are shared by every page
        n, used, pages = self._data.visible_accounts(clock), 0, 0
        # Page k answers last_id = id of row k*limit-1; an exact multiple also gets the final empty page.
        for start in range(0, n + 1, limit):
            q = ListQuery("asc", limit, int(self._data.ids[start - 1]) if start else None)
            key = ("accounts", None, q, clock)
            body = cache.get(key) or self._routes.accounts_page(q, clock)[0]
            if used + len(body) > cache.max_bytes or not cache.put(key, body):
                break
            used, pages = used + len(body), pages + 1
        return pages

    # ---- HTTP ---------------------------------------------------------------

    def make_app(self) -> web.Application:
        """An aiohttp app; one catch-all route so the contract's check order is ours to control."""
        app = web.Application()
        app[SIMULATOR_KEY] = self
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/_sim/") or request.path == "/_sim":
            return self._controls.respond(request)
        seq = self._stats.enter()
        status: int | None = None
        try:
            response, status = await self._handle_api(request, seq)
            return response
        finally:
            self._stats.leave(status)

    async def _handle_api(self, request: web.Request, seq: int) -> tuple[web.StreamResponse, int | None]:
        """Latency, then checks 1-3, a planned fault (check 4), and the route (checks 5-7)."""
        cfg = self.config
        plan = ChaosPlanner(cfg.seed, cfg.latency_ms, cfg.latency_jitter_ms, cfg.error_rate, cfg.fail_every_n,
                            cfg.fault_kinds).plan(seq)
        if plan.delay_s > 0:
            await asyncio.sleep(plan.delay_s)
        try:
            self._gates.check(request)
            if plan.fault is not None:
                self._stats.fault(plan.fault)
                return self._gates.fault(request, plan)
            body = self._routes.answer(request, self._clock)
            return web.Response(body=body, content_type="application/json"), 200
        except Reject as reject:
            return self._gates.error(reject, seq), reject.status


@contextmanager
def tradesync_simulator(
    config: TradesyncSimConfig | None = None, **overrides: Any
) -> Iterator[tuple[str, TradesyncSimulator]]:
    """Run a simulator in a background thread; yields ``(base_url, simulator)``.

    >>> with tradesync_simulator(accounts=3, rate_limit_rps=0) as (url, sim):  # doctest: +SKIP
    ...     ...
    """
    cfg = replace(config or TradesyncSimConfig(), **overrides)
    sim = TradesyncSimulator(cfg)
    with run_simulator_in_thread(sim.make_app) as base_url:
        yield base_url, sim
