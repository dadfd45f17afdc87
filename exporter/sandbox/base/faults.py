"""Seeded fault injection and latency: decisions that replay exactly for the same seed.

Two schedules, because the simulators' contracts count differently:

* :class:`ChaosPlanner` decides everything about request number ``seq`` up front, from one
  stream seeded with ``(seed, seq)``; ``fail_every_n`` counts every request (Tradesync).
* :class:`StagedFaults` decides when a request reaches the fault stage, after the token and the
  rate limit; ``fail_every_n`` counts only the requests that got that far (TraderEvolution).

Both apply the same rule (:func:`is_faulted`) and answer the generic kinds the same way
(:func:`drop_connection`, :func:`html_502_response`); each API writes its own error bodies.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

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


def check_fault_kinds(kinds: tuple[str, ...], allowed: tuple[str, ...], detail: bool = False) -> None:
    """Raise ``ValueError`` unless ``kinds`` is a non-empty subset of ``allowed``."""
    if not kinds or not set(kinds) <= set(allowed):
        suffix = f", got {kinds}" if detail else ""
        raise ValueError(f"fault_kinds must be a non-empty subset of {allowed}{suffix}")


def is_faulted(roll: float, nth: int, error_rate: float, fail_every_n: int) -> bool:
    """The shared rule: a seeded roll below ``error_rate``, or every ``fail_every_n``-th request."""
    return roll < error_rate or (fail_every_n > 0 and nth % fail_every_n == 0)


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
        check_fault_kinds(self.fault_kinds, ALL_FAULTS, detail=True)

    def plan(self, seq: int) -> RequestPlan:
        rng = random.Random(mix64(self.seed, 0xFA17, seq))
        # Draw in a fixed order so every decision is a pure function of (seed, seq).
        jitter_u, fault_u = rng.random(), rng.random()
        kind = self.fault_kinds[rng.randrange(len(self.fault_kinds))]
        retry_after = rng.randrange(2)
        delay_ms = self.latency_ms + self.latency_jitter_ms * jitter_u
        faulted = is_faulted(fault_u, seq, self.error_rate, self.fail_every_n)
        return RequestPlan(seq, max(delay_ms, 0.0) / 1000.0, kind if faulted else None, retry_after)


class StagedFaults:
    """Faults decided at the fault stage; ``fail_every_n`` counts the requests that reach it.

    Jitter and faults draw from streams seeded by ``(seed, purpose, seq)``, apart from the data's
    own random streams, so a failing run replays exactly.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.reached = 0  # requests that reached the fault stage

    def _rng(self, seq: int, purpose: str) -> random.Random:
        return random.Random(f"{self.seed}:{purpose}:{seq}")

    def latency_s(self, seq: int, latency_ms: float, jitter_ms: float) -> float:
        """The delay of request ``seq``, errors included."""
        jitter = self._rng(seq, "jitter").uniform(0, jitter_ms) if jitter_ms > 0 else 0.0
        return max(0.0, latency_ms + jitter) / 1000

    def decide(self, seq: int, error_rate: float, fail_every_n: int, kinds: tuple[str, ...]) -> str | None:
        """Count a request at the fault stage; the fault kind it gets, or None."""
        self.reached += 1
        rng = self._rng(seq, "fault")
        if not is_faulted(rng.random(), self.reached, error_rate, fail_every_n):
            return None
        return kinds[rng.randrange(len(kinds))]


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
