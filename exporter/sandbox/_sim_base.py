"""Generic building blocks shared by the API simulators.

Nothing here knows about a particular broker API: fault decisions, a token
bucket, request counters and the helpers that run an aiohttp app in a
background thread (tests) or in the foreground (CLI).
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web

ALL_FAULTS: tuple[str, ...] = ("500", "503", "429", "429-retry-after", "drop", "html502")

_MASK64 = (1 << 64) - 1

NGINX_502_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


def mix64(*values: int) -> int:
    """Fold integers into one well-mixed 64-bit value (splitmix64 finaliser).

    Stable across processes, unlike ``hash()`` of strings or tuples.
    """
    acc = 0x9E3779B97F4A7C15
    for value in values:
        acc = (acc ^ (value & _MASK64)) * 0xBF58476D1CE4E5B9 & _MASK64
        acc = (acc ^ (acc >> 27)) * 0x94D049BB133111EB & _MASK64
        acc ^= acc >> 31
    return acc


@dataclass(frozen=True)
class RequestPlan:
    """What the chaos layer decided for one request, before it is handled."""

    seq: int
    delay_s: float
    fault: str | None
    retry_after: int


@dataclass
class ChaosPlanner:
    """Seeded per-request latency and fault decisions that replay exactly.

    Each request gets its own ``random.Random`` seeded from ``(seed, seq)``, so
    request number 17 always gets the same jitter and fault whatever happened
    before it.
    """

    seed: int
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    error_rate: float = 0.0
    fail_every_n: int = 0
    fault_kinds: tuple[str, ...] = ("500",)

    def __post_init__(self) -> None:
        unknown = set(self.fault_kinds) - set(ALL_FAULTS)
        if unknown or not self.fault_kinds:
            raise ValueError(f"fault_kinds must be a non-empty subset of {ALL_FAULTS}, got {self.fault_kinds}")

    def plan(self, seq: int) -> RequestPlan:
        rng = random.Random(mix64(self.seed, 0xFA17, seq))
        # Draw in a fixed order so every decision is a pure function of (seed, seq).
        jitter_u, fault_u = rng.random(), rng.random()
        kind = self.fault_kinds[rng.randrange(len(self.fault_kinds))]
        retry_after = rng.randrange(2)
        delay_ms = self.latency_ms + self.latency_jitter_ms * jitter_u
        faulted = fault_u < self.error_rate or (self.fail_every_n > 0 and seq % self.fail_every_n == 0)
        return RequestPlan(seq, max(delay_ms, 0.0) / 1000.0, kind if faulted else None, retry_after)


@dataclass
class TokenBucket:
    """Classic token bucket on the monotonic wall clock; ``rate <= 0`` disables it."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    stamp: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)
        self.stamp = time.monotonic()

    @property
    def enabled(self) -> bool:
        return self.rate > 0 and self.burst > 0

    def take(self, now: float | None = None) -> float:
        """Take one token. Returns 0.0 on success, else seconds until a token is due."""
        if not self.enabled:
            return 0.0
        now = time.monotonic() if now is None else now
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class KeyedRateLimiter:
    """One token bucket per API key; rate and burst may change between calls."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, key: str, rate: float | None = None, burst: float | None = None) -> float:
        """Take a token for ``key``: 0.0 if allowed, else seconds until one is due."""
        self.rate = self.rate if rate is None else rate
        self.burst = self.burst if burst is None else burst
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
        bucket.rate, bucket.burst = self.rate, self.burst
        return bucket.take()

    def reset(self) -> None:
        self._buckets.clear()

    @staticmethod
    def retry_after_seconds(wait_s: float) -> int:
        # Retry-After carries whole seconds; never advertise 0 for a real shortage.
        return max(1, math.ceil(wait_s))


@dataclass
class RequestStats:
    """Counters exposed by the ``/_sim/state`` control route."""

    requests_total: int = 0
    faults_injected: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    responses_by_status: Counter[int] = field(default_factory=Counter)

    def enter(self) -> int:
        """Count a new API request and return its 1-based sequence number."""
        self.requests_total += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        return self.requests_total

    def leave(self, status: int | None) -> None:
        self.in_flight -= 1
        if status is not None:
            self.responses_by_status[status] += 1

    def reset(self) -> None:
        # Requests still being handled keep counting so in_flight never goes negative.
        self.requests_total = 0
        self.faults_injected = 0
        self.responses_by_status = Counter()
        self.peak_in_flight = self.in_flight

    def snapshot(self) -> dict[str, object]:
        return {
            "requests_total": self.requests_total,
            "responses_by_status": {str(k): v for k, v in sorted(self.responses_by_status.items())},
            "faults_injected": self.faults_injected,
            "peak_in_flight": self.peak_in_flight,
            "in_flight": self.in_flight,
        }


def drop_connection(request: web.Request) -> web.Response:
    """Close the TCP connection so the client sees a disconnect and no response."""
    transport = request.transport
    if transport is not None:
        transport.close()
    # aiohttp discards this response because the transport is already gone.
    return web.Response(status=599)


def html_502_response() -> web.Response:
    """An nginx-style gateway error page, as a proxy in front of an API sends it."""
    return web.Response(status=502, body=NGINX_502_HTML, content_type="text/html")


AppFactory = Callable[[], web.Application] | web.Application


def _build_app(app_factory: AppFactory) -> web.Application:
    return app_factory if isinstance(app_factory, web.Application) else app_factory()


async def _start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = int(runner.addresses[0][1])
    return runner, bound_port


async def serve(app: web.Application, host: str, port: int) -> None:
    """Serve ``app`` until this coroutine is cancelled (the CLI's foreground mode)."""
    runner, _ = await _start(app, host, port)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


@contextmanager
def run_simulator_in_thread(
    app_factory: AppFactory, host: str = "127.0.0.1", port: int = 0
) -> Iterator[str]:
    """Run an aiohttp app on its own event loop in a daemon thread.

    Yields the base URL, e.g. ``http://127.0.0.1:54321``; the server is shut
    down and the thread joined when the block exits.

    >>> with run_simulator_in_thread(sim.make_app) as base_url:  # doctest: +SKIP
    ...     urllib.request.urlopen(base_url + "/_sim/state")
    """
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, object] = {}

    async def main() -> None:
        stop = asyncio.Event()
        box["stop"] = stop
        try:
            runner, bound = await _start(_build_app(app_factory), host, port)
        except BaseException as exc:  # surface bind/factory errors in the caller's thread
            box["error"] = exc
            ready.set()
            return
        box["port"] = bound
        ready.set()
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    def thread_main() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    thread = threading.Thread(target=thread_main, name="sim-server", daemon=True)
    thread.start()
    ready.wait()
    if "error" in box:
        thread.join()
        raise box["error"]  # type: ignore[misc]
    try:
        yield f"http://{host}:{box['port']}"
    finally:
        stop: asyncio.Event = box["stop"]  # type: ignore[assignment]
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)

