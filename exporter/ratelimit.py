"""Request pacing shared by every task of one source.

A pacer hands out evenly spaced start times (``1 / rate`` apart) instead of letting a burst through
and reacting to 429s afterwards: the API sees a steady stream just under its limit. When the server
answers 429 anyway, the pacer can pause everybody (``Retry-After``, a token block) and, if it is
adaptive, lower its rate and probe upwards again slowly (additive increase, multiplicative decrease).
"""

from __future__ import annotations

import asyncio
import time


class Pacer:
    """Evenly spaced request slots at ``rate`` per second; ``rate=None`` means unlimited.

    ``adaptive=True`` starts at ``rate`` (or ``initial`` when no rate is known) and adjusts it from
    the 429s the server sends: -20% on each 429, +``probe`` requests/s per second of clean traffic.
    """

    def __init__(
        self,
        rate: float | None,
        *,
        adaptive: bool = False,
        ceiling: float | None = None,
        clock=time.monotonic,
    ) -> None:
        self.rate = rate if rate and rate > 0 else None
        self.adaptive = adaptive
        self.ceiling = ceiling if ceiling else self.rate
        self._clock = clock
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._last_throttle = 0.0
        self._lock = asyncio.Lock()
        self.throttles = 0

    async def acquire(self) -> None:
        """Wait for this request's slot (and for any pause to end)."""
        async with self._lock:
            now = self._clock()
            start = max(now, self._paused_until)
            if self.rate is not None:
                start = max(start, self._next_slot)
                self._next_slot = start + 1.0 / self.rate
        delay = start - self._clock()
        if delay > 0:
            await asyncio.sleep(delay)

    def pause(self, seconds: float) -> None:
        """Stop handing out slots for ``seconds`` (a Retry-After or a blocked token)."""
        until = self._clock() + max(0.0, seconds)
        if until > self._paused_until:
            self._paused_until = until
            self._next_slot = max(self._next_slot, until)

    def on_throttled(self) -> None:
        """The server answered 429: slow down if adaptive."""
        self.throttles += 1
        now = self._clock()
        if not self.adaptive or self.rate is None:
            return
        # one decrease per burst of 429s, not one per in-flight request that hit it
        if now - self._last_throttle > 1.0 / self.rate * 4:
            self.rate = max(0.5, self.rate * 0.8)
        self._last_throttle = now

    def on_success(self) -> None:
        """A request went through: probe a little faster if adaptive and below the ceiling."""
        if not self.adaptive or self.rate is None:
            return
        step = 0.02  # requests/s gained per success; slow enough that 429s stay rare
        limit = self.ceiling if self.ceiling else float("inf")
        self.rate = min(limit, self.rate + step)
