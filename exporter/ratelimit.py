"""Request pacing shared by every task of one source (or of one collection).

A pacer hands out evenly spaced start times (``1 / rate`` apart) instead of letting a burst through
and reacting to 429s afterwards: the API sees a steady stream just under its limit. When the server
answers 429 anyway, the whole source can be paused (``Retry-After``, a blocked token) and an
adaptive pacer lowers its rate, then probes upwards again slowly (additive increase, multiplicative
decrease, as TCP does with its window):

- no rate configured: unlimited until repeated 429s without a Retry-After, then start from 90% of
  the rate that the server actually accepted during the last second;
- a 429 that imposes a wait (Retry-After, a blocked token), or repeated plain 429s (two within
  two seconds): -10%, at most once a second, never below a quarter of the configured (or first
  estimated) rate. A lone plain 429 is only retried: scattered 429s from a flaky proxy must not
  starve the run, while a real limit answers 429 again and again;
- a success, a second or more after the last cut: +0.05% (about 200 requests to win back one
  cut), never above the configured rate.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable


class Pacer:
    """Evenly spaced request slots at ``rate`` per second; ``rate=None`` means unlimited."""

    CUT = 0.9
    GROWTH = 0.0005
    QUIET = 1.0  # seconds after a cut before the rate grows again
    FLOOR = 0.25  # of the reference rate

    def __init__(
        self,
        rate: float | None,
        *,
        adaptive: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate if rate and rate > 0 else None
        self.ceiling = self.rate
        self._floor = self.rate * self.FLOOR if self.rate else 0.0
        self._first_success: float | None = None
        self.adaptive = adaptive
        self._clock = clock
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._last_cut = -1e9
        self._successes: deque[float] = deque()
        self._throttled: deque[float] = deque()
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
        """Hand out no slot for ``seconds`` (a Retry-After or a blocked token)."""
        until = self._clock() + max(0.0, seconds)
        if until > self._paused_until:
            self._paused_until = until
            self._next_slot = max(self._next_slot, until)

    def on_throttled(self, *, told_to_wait: bool = False) -> None:
        """The server answered 429: slow down if adaptive.

        ``told_to_wait``: the answer said how long to wait (Retry-After, a token block). With no
        configured rate that wait is the whole remedy: a rate guessed right after a pause is wrong.
        """
        self.throttles += 1
        if not self.adaptive or (told_to_wait and self.rate is None):
            return
        now = self._clock()
        self._throttled.append(now)
        while self._throttled and self._throttled[0] < now - 2.0:
            self._throttled.popleft()
        # a wait the server imposed means we were too fast: one 429 of that kind is evidence enough
        if (len(self._throttled) < 2 and not told_to_wait) or now - self._last_cut < 1.0:
            return
        self._last_cut = now
        if self.rate is None:
            accepted = self._recent_successes(now)
            if self._first_success is not None and now - self._first_success < 1.0:
                accepted = int(accepted / max(0.05, now - self._first_success))  # a young run: per second
            self.rate = max(1.0, accepted * self.CUT)
            self._floor = self.rate * self.FLOOR
        else:
            self.rate = max(self._floor, self.rate * self.CUT)

    def on_success(self) -> None:
        """A request went through: probe a little faster if adaptive and below the ceiling."""
        if not self.adaptive:
            return
        now = self._clock()
        if self.rate is None:
            if self._first_success is None:
                self._first_success = now
            self._successes.append(now)
            self._recent_successes(now)
            return
        if now - self._last_cut >= self.QUIET:
            grown = self.rate * (1 + self.GROWTH)
            self.rate = min(self.ceiling, grown) if self.ceiling else grown

    def _recent_successes(self, now: float) -> int:
        while self._successes and self._successes[0] < now - 1.0:
            self._successes.popleft()
        return len(self._successes)
