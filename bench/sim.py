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
from datetime import datetime

import msgspec
from aiohttp import web

from exporter.sandbox.base import serve
from exporter.sandbox.tradesync import ListQuery, TradesyncSimConfig, TradesyncSimulator


class _Meta(msgspec.Struct):
    last_id: int | None


class _Envelope(msgspec.Struct):
    meta: _Meta
    data: list[msgspec.Raw]


class PreRenderedAccounts:
    """Account pages joined from every account's JSON text, rendered once at the simulator's clock.

    Plugged into the simulator as its ``account_pages`` source: it answers unfiltered pages at the
    clock it rendered, and leaves everything else (None) to the simulator.
    """

    def __init__(self, simulator: TradesyncSimulator) -> None:
        self.clock = simulator.clock
        self._ids: list[int] = []
        self._rows: list[bytes] = []
        decoder = msgspec.json.Decoder(_Envelope)
        last_id: int | None = None
        while True:
            page = decoder.decode(simulator.render_accounts_page(ListQuery("asc", 1000, last_id)))
            rows = [bytes(raw) for raw in page.data]
            self._rows.extend(rows)
            last_id = page.meta.last_id
            if last_id is None or not rows:
                break
        self._ids = simulator.account_ids().tolist()
        assert len(self._ids) == len(self._rows), "one JSON row per account"

    def __call__(self, q: ListQuery, clock: datetime) -> bytes | None:
        if q.filters or clock != self.clock:
            return None
        ids, rows = self._ids, self._rows
        if q.order == "asc":
            start = 0 if q.last_id is None else bisect_right(ids, q.last_id)
            stop = min(start + q.limit, len(ids))
            page, last_id = rows[start:stop], ids[stop - 1] if stop > start else None
        else:
            stop = len(ids) if q.last_id is None else bisect_left(ids, q.last_id)
            start = max(stop - q.limit, 0)
            page, last_id = rows[start:stop][::-1], ids[start] if stop > start else None
        meta = msgspec.json.encode({"count": len(page), "limit": q.limit, "order": q.order, "last_id": last_id})
        return b'{"result":"success","status":200,"meta":' + meta + b',"data":[' + b",".join(page) + b"]}"

    def self_check(self, simulator: TradesyncSimulator) -> None:
        """Fail loudly if a joined page ever differs from the simulator's own rendering."""
        ids = self._ids
        probes = [None, ids[0] - 1, ids[len(ids) // 2], ids[-1], ids[-1] + 10] if ids else [None]
        for order in ("asc", "desc"):
            for limit in (1, 7, 1000):
                for last_id in probes:
                    q = ListQuery(order, limit, last_id)
                    assert self(q, self.clock) == simulator.render_accounts_page(q, self.clock), (
                        f"pre-rendered page differs for {q}")


class WarmSimulator(TradesyncSimulator):
    """A Tradesync simulator whose account pages are slices of pre-rendered rows, and whose latency
    ``POST /_bench/latency?ms=N`` changes."""

    def __init__(self, config: TradesyncSimConfig) -> None:
        super().__init__(config, page_cache_bytes=0)  # nothing to cache: every page is a cheap join
        pages = PreRenderedAccounts(self)
        pages.self_check(self)
        self.account_pages = pages

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
