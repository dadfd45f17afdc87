"""The Tradesync simulator for benchmarks: every ``/accounts`` page served from memory.

    python bench/sim.py --port 8801 --accounts 1000000 [--latency-ms 0]

Why not ``exporter sandbox tradesync --warm``: ``--warm`` pre-renders only the pages of one
sequential walk (``order=asc&limit=1000`` from the start) and only up to the simulator's 64 MB
page cache, i.e. about 80,000 accounts. Every other page (the rest of a large walk, and every page
of the exporter's parallel id-range walks, whose ``last_id`` and ``limit`` differ) is rendered on
demand: ~30 ms of simulator CPU per 1,000 accounts, on the same 2 cores as the client we measure.

This launcher renders every account once, keeps each one's JSON text, and answers any keyset query
(``order``, ``limit``, ``last_id``) by joining the rows in range: byte-identical to the simulator's
own pages (checked at start-up), in well under a millisecond. ``POST /_bench/latency?ms=20``
changes the simulated latency, so one warmed process serves every latency of a benchmark size.
Everything else (auth, rate limit, ``/_sim/state``, ``/_sim/reset``) is the stock simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from bisect import bisect_left, bisect_right
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web

from exporter.sandbox._sim_base import serve
from exporter.sandbox.tradesync import TradesyncSimConfig, TradesyncSimulator, _Query


class _Envelope(msgspec.Struct):
    data: list[msgspec.Raw]


class WarmSimulator(TradesyncSimulator):
    """A Tradesync simulator whose account pages are slices of pre-rendered rows."""

    def __init__(self, config: TradesyncSimConfig) -> None:
        super().__init__(config, page_cache_bytes=0)  # nothing to cache: every page is a cheap join
        self._clock_rendered = self._clock
        self._row_ids: list[int] = []
        self._row_json: list[bytes] = []
        decoder = msgspec.json.Decoder(_Envelope)
        last_id: int | None = None
        while True:
            body, last_id = super()._render_accounts_page(_Query("asc", 1000, last_id), self._clock)
            rows = [bytes(raw) for raw in decoder.decode(body).data]
            self._row_json.extend(rows)
            if last_id is None or not rows:
                break
        self._row_ids = self.account_ids().tolist()
        assert len(self._row_ids) == len(self._row_json), "one JSON row per account"
        self._self_check()

    def _render_accounts_page(self, q: _Query, clock: int) -> tuple[bytes, int | None]:
        if q.filters or clock != self._clock_rendered:
            return super()._render_accounts_page(q, clock)
        ids, rows = self._row_ids, self._row_json
        if q.order == "asc":
            start = 0 if q.last_id is None else bisect_right(ids, q.last_id)
            stop = min(start + q.limit, len(ids))
            page, last_id = rows[start:stop], ids[stop - 1] if stop > start else None
        else:
            stop = len(ids) if q.last_id is None else bisect_left(ids, q.last_id)
            start = max(stop - q.limit, 0)
            page, last_id = rows[start:stop][::-1], ids[start] if stop > start else None
        meta = msgspec.json.encode({"count": len(page), "limit": q.limit, "order": q.order, "last_id": last_id})
        body = b'{"result":"success","status":200,"meta":' + meta + b',"data":[' + b",".join(page) + b"]}"
        return body, last_id

    def _self_check(self) -> None:
        """Fail loudly if a joined page ever differs from the simulator's own rendering."""
        ids = self._row_ids
        probes = [None, ids[0] - 1, ids[len(ids) // 2], ids[-1], ids[-1] + 10] if ids else [None]
        for order in ("asc", "desc"):
            for limit in (1, 7, 1000):
                for last_id in probes:
                    q = _Query(order, limit, last_id)
                    mine = self._render_accounts_page(q, self._clock)
                    theirs = TradesyncSimulator._render_accounts_page(self, q, self._clock)
                    assert mine == theirs, f"pre-rendered page differs for {q}"

    def make_app(self) -> web.Application:
        app = super().make_app()

        @web.middleware
        async def latency_control(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            if request.path == "/_bench/latency" and request.method == "POST":
                self.config.latency_ms = float(request.query["ms"])
                return web.json_response({"latency_ms": self.config.latency_ms})
            return await handler(request)

        app.middlewares.append(latency_control)
        return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--accounts", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    config = TradesyncSimConfig(
        accounts=args.accounts, trades_per_account=0, latency_ms=args.latency_ms, rate_limit_rps=0
    )
    simulator = WarmSimulator(config)
    print(f"rendered {args.accounts:,} accounts in {time.perf_counter() - started:.1f}s; "
          f"serving on http://{args.host}:{args.port}", flush=True)
    try:
        asyncio.run(serve(simulator.make_app(), args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
