"""A stock simulator in its own process, with every API request's arrival, end and status recorded.

    python bench/rate_sim.py --port 8802 --kind traderevolution --config '{"users": 1500, "latency_ms": 20}'
    python bench/rate_sim.py --port 8803 --kind tradesync --config '{"accounts": 100000, "rate_limit_rps": 50}'

Used by ``bench/rates.py``. The simulator is the project's own (``exporter.sandbox``), unchanged:
``--config`` is passed to its config dataclass. For Tradesync the account pages come pre-rendered
(``bench/sim.py``'s ``WarmSimulator``), so the simulator's CPU stays out of the way. One aiohttp
middleware, added here, records for every API request (not ``/_sim/*`` or ``/_bench/*``):

    [arrived, ended, collection, status, retry_after, connection, query]

``arrived``/``ended`` are ``time.monotonic()`` seconds (one clock for every process of the host)
at the middleware's entry and once the handler returned (TraderEvolution: the answer is sent;
Tradesync: it is about to be written); ``collection`` is the first path segment after the API's
base (``accountOperations``, ``accounts``, ...); ``retry_after`` the header's value or null;
``connection`` the client's TCP port, so requests of one keep-alive connection can be told apart;
``query`` the query string (a retried request repeats it).

Control routes (besides the simulator's own ``/_sim/state``, ``/_sim/reset``):

- ``GET /_bench/events``: every recorded request since the last clear;
- ``POST /_bench/clear``: forget them;
- ``POST /_bench/config?latency_ms=20&rate_limit_rps=50&retry_after_header=true``: change config
  fields of the running simulator (fields it reads per request: latency, rate limit, Retry-After).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from exporter.sandbox.base import serve

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build(kind: str, config: dict[str, Any]) -> tuple[web.Application, Any, str]:
    """The simulator's app, the simulator, and the path prefix of its API."""
    if kind == "traderevolution":
        from exporter.sandbox.traderevolution import BASE_PATH, TraderEvolutionSimConfig, TraderEvolutionSimulator

        simulator: Any = TraderEvolutionSimulator(TraderEvolutionSimConfig(**config))
        return simulator.make_app(), simulator, BASE_PATH + "/"
    if kind == "tradesync":
        from sim import WarmSimulator  # bench/sim.py: every account page pre-rendered

        from exporter.sandbox.tradesync import TradesyncSimConfig

        simulator = WarmSimulator(TradesyncSimConfig(**config))
        return simulator.make_app(), simulator, "/"
    raise SystemExit(f"unknown simulator kind {kind!r}")


def parse_value(current: Any, text: str) -> Any:
    if isinstance(current, bool):
        return text.lower() in ("1", "true", "yes", "on")
    if isinstance(current, int) and not isinstance(current, bool):
        return int(float(text))
    if isinstance(current, float):
        return float(text)
    return text


def add_recorder(app: web.Application, simulator: Any, prefix: str) -> None:
    events: list[tuple[float, float, str, int, str | None, int, str]] = []

    def collection(path: str) -> str:
        tail = path[len(prefix):] if path.startswith(prefix) else path.lstrip("/")
        parts = [p for p in tail.split("/") if p]
        if parts and parts[0].startswith("v") and parts[0][1:].isdigit() and len(parts) > 1:
            parts = parts[1:]  # /v1/accounts -> accounts
        return parts[0] if parts else ""

    @web.middleware
    async def recorder(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path.startswith("/_bench/"):
            return control(request)
        if path.startswith("/_sim") or not path.startswith(prefix):
            return await handler(request)
        arrived = time.monotonic()
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        port = int(peer[1]) if peer else -1
        status, retry_after = 0, None
        try:
            response = await handler(request)
            status, retry_after = response.status, response.headers.get("Retry-After")
            return response
        finally:
            events.append((arrived, time.monotonic(), collection(path), status, retry_after, port,
                           request.query_string))

    def control(request: web.Request) -> web.Response:
        if request.path == "/_bench/events" and request.method == "GET":
            return web.Response(body=orjson.dumps({"now": time.monotonic(), "events": events}),
                                content_type="application/json")
        if request.path == "/_bench/clear" and request.method == "POST":
            events.clear()
            return web.json_response({"cleared": True})
        if request.path == "/_bench/config" and request.method == "POST":
            changed = {}
            for name, text in request.query.items():
                if not hasattr(simulator.config, name):
                    return web.json_response({"error": f"no config field {name!r}"}, status=400)
                value = parse_value(getattr(simulator.config, name), text)
                setattr(simulator.config, name, value)
                changed[name] = value
            return web.json_response(changed)
        return web.json_response({"error": "unknown bench route"}, status=404)

    app.middlewares.append(recorder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kind", choices=("traderevolution", "tradesync"), required=True)
    parser.add_argument("--config", default="{}", help="JSON object of simulator config fields")
    args = parser.parse_args()
    started = time.perf_counter()
    app, simulator, prefix = build(args.kind, json.loads(args.config))
    add_recorder(app, simulator, prefix)
    print(f"{args.kind} simulator built in {time.perf_counter() - started:.1f}s; "
          f"serving on http://{args.host}:{args.port}", flush=True)
    try:
        asyncio.run(serve(app, args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
