"""The probing pacer in virtual time against model rate limiters: how its constants were chosen.

    python bench/pacer_model.py                         # the shipped constants (~2 s)
    python bench/pacer_model.py --set CLIMB=0.2 --set WAIT=1.0
    python bench/pacer_model.py --results bench/results # also writes pacer-model.md

The real :class:`exporter.probing.ProbingPacer` runs on an asyncio loop whose clock only moves when
every task waits (90 s of traffic take milliseconds), against a model server: a token bucket of R
requests/s with burst B (or, with B = 0, a fixed window of R requests per calendar second), where
each refused request is a violation and 5 violations within 60 s block the token for 3 s. C = 8
workers send requests in a loop with latency L (half each way, +-20% jitter); on a 429 they act as
:class:`exporter.http.HttpClient` does (a refused probe pauses for ``block_wait`` x1..x4, otherwise a
jittered backoff before the retry). Grid: R in (3, 10, 30), B in (window, 1, R, 2R), L in (5, 100,
300) ms, two seeds, 90 s each, ``rps = 0`` (start at 1.6/s). Per run: requests, 429s, blocks and
"settled" = accepted requests in the second half / (45 s x R).

This is a model (no HTTP, no CPU cost, perfect clocks); ``bench/rates.py --only te`` measures the
exporter itself against the TraderEvolution simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import selectors
import statistics
from pathlib import Path
from typing import Any

from exporter.probing import ProbingPacer

DURATION = 90.0
CONCURRENCY = 8
THRESHOLD, BLOCK_S, BLOCK_WAIT = 5, 3.0, 12.0


class _VirtualSelector(selectors.DefaultSelector):
    """Never sleeps: a wait for ``timeout`` moves the virtual clock instead."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__()
        self.clock = clock

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if not ready and timeout is not None and timeout > 0:
            self.clock[0] += timeout
        return ready


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.now = [0.0]
        super().__init__(_VirtualSelector(self.now))

    def time(self) -> float:
        return self.now[0]


class Limiter:
    """Token bucket (burst > 0) or fixed one-second window (burst 0), violations, token blocks."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = float(burst), (0.0 if burst else -1.0)
        self.violations: list[float] = []
        self.blocked_until = -1.0
        self.requests = self.throttled = self.blocks = 0
        self.accepted: list[float] = []

    def allow(self, now: float) -> bool:
        self.requests += 1
        if now < self.blocked_until:
            self.throttled += 1
            return False
        if self.burst == 0:
            window = math.floor(now)
            if window != self.stamp:
                self.stamp, self.tokens = window, self.rate
        else:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.accepted.append(now)
            return True
        self.throttled += 1
        self.violations = [v for v in self.violations if v > now - 60] + [now]
        if len(self.violations) >= THRESHOLD:
            self.blocked_until, self.violations = now + BLOCK_S, []
            self.blocks += 1
        return False


def simulate(rate: float, burst: int, latency: float, seed: int) -> dict[str, Any]:
    loop = VirtualLoop()
    rng = random.Random(seed)
    pacer = ProbingPacer(None, start=1.6, clock=loop.time)
    server = Limiter(rate, burst)
    block = {"until": -1e9, "streak": 0}

    def block_pause() -> float:  # HttpClient._block_pause
        now = loop.time()
        if now < block["until"]:
            return block["until"] - now
        block["streak"] = block["streak"] + 1 if now - block["until"] < max(1.0, BLOCK_WAIT) else 1
        block["until"] = now + BLOCK_WAIT * min(block["streak"], 4)
        return block["until"] - now

    async def worker() -> None:
        attempt = 0
        while loop.time() < DURATION:
            ticket = await pacer.acquire()
            try:
                await asyncio.sleep(latency / 2 * rng.uniform(0.8, 1.2))
                ok = server.allow(loop.time())
                await asyncio.sleep(latency / 2 * rng.uniform(0.8, 1.2))
                if ok:
                    pacer.on_success(ticket)
                    attempt = 0
                    continue
                attempt += 1
                if pacer.on_throttled(ticket):
                    wait = block_pause()
                    pacer.pause(wait)
                else:
                    wait = max(0.01, rng.uniform(0, min(30.0, 0.25 * 2 ** (attempt - 1))))
                await asyncio.sleep(wait)
            finally:
                pacer.release(ticket)

    async def main() -> None:
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    half = sum(1 for t in server.accepted if DURATION / 2 <= t < DURATION)
    return {"R": rate, "B": burst, "L_ms": round(latency * 1000), "seed": seed, "requests": server.requests,
            "429": server.throttled, "blocks": server.blocks, "settled": half / (DURATION / 2) / rate,
            "rate_end": pacer.rate}


def grid() -> list[dict[str, Any]]:
    runs = []
    for rate in (3.0, 10.0, 30.0):
        for burst in (0, 1, math.ceil(rate), 2 * math.ceil(rate)):
            for latency in (0.005, 0.1, 0.3):
                for seed in (1, 2):
                    runs.append(simulate(rate, burst, latency, seed))
    return runs


def table(runs: list[dict[str, Any]], settings: dict[str, float]) -> str:
    shown = ", ".join(f"{k} = {v:g}" for k, v in settings.items())
    lines = [
        f"Probing pacer model, {len(runs)} runs of {DURATION:g} virtual seconds ({shown}). B = 0: a fixed "
        "window of R per calendar second. Settled = accepted requests in the second half / (45 s x R); "
        "the run is concurrency-bound where C / L < R (R = 30, L = 300 ms).",
        "",
        "| R | B | L ms | requests | 429s | blocks | settled / R | rate at end |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        if r["seed"] != 1:
            continue
        lines.append(f"| {r['R']:g} | {r['B']} | {r['L_ms']} | {r['requests']:,} | {r['429']} | {r['blocks']} "
                     f"| {r['settled']:.2f} | {r['rate_end']:.2f} |")
    settled = [r["settled"] for r in runs]
    lines += [
        "",
        f"All {len(runs)} runs (both seeds): blocks in {sum(1 for r in runs if r['blocks'])} runs "
        f"({sum(r['blocks'] for r in runs)} in all), at most {max(r['429'] for r in runs)} 429s in a run, "
        f"settled / R median {statistics.median(settled):.2f}, below 0.8 in "
        f"{sum(1 for s in settled if s < 0.8)} runs.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a ProbingPacer constant (CLIMB, GROWTH, CUT, HEADROOM, MARGIN, WAIT, ...)")
    parser.add_argument("--results", type=Path, help="folder to write pacer-model.md into")
    args = parser.parse_args()
    settings = {name: getattr(ProbingPacer, name) for name in ("CLIMB", "CUT", "MARGIN", "WAIT", "GROWTH")}
    for item in args.set:
        name, _, value = item.partition("=")
        if not hasattr(ProbingPacer, name) or not value:
            raise SystemExit(f"--set {item!r}: expected NAME=VALUE with NAME a ProbingPacer constant")
        setattr(ProbingPacer, name, float(value))
        settings[name] = float(value)
    text = table(grid(), settings)
    print(text)
    if args.results is not None:
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "pacer-model.md").write_text(text)


if __name__ == "__main__":
    main()
