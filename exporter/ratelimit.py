"""Request pacing shared by every task of one source (or of one collection).

A pacer hands out evenly spaced start times (``1 / rate`` apart) instead of letting a burst through
and reacting to 429s afterwards: the API sees a steady stream just under its limit. When the server
answers 429 anyway, the whole source can be paused (``Retry-After``, a blocked token) and an
adaptive pacer lowers its rate, then probes upwards again (as TCP does with its window):

- a cut needs evidence: a 429 that imposes a wait (Retry-After, a blocked token), or at least two
  plain 429s making at least 3% of the answers of the last second. A flaky proxy's scattered 429s
  are only retried; a real limit answers 429 again and again;
- the cut follows the evidence: the rate is multiplied by the share of answers that were accepted
  (between x0.5 and x0.9), at most once per four request intervals;
- no rate configured: unlimited until the first cut, which starts from the rate the server
  accepted during the last second (time spent paused left out);
- growth: +1% per accepted request (slow start) until a cut; after a cut, +2% per second up to
  97% of the rate that drew it; after 10 quiet seconds, slow start again, so a cut caused by noise
  is won back and a limit that rises is found. Never above the configured rate.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, eq=False)
class Ticket:
    """One request's pass from a pacer that learns from each answer (:mod:`exporter.probing`)."""

    epoch: int  # the pacer's cuts when it was sent: a 429 of an older epoch is no news
    rate: float  # the rate it was sent at
    probe: bool  # sent alone after a 429, to tell a blocked token from a violation


class Pacer:
    """Evenly spaced request slots at ``rate`` per second; ``rate=None`` means unlimited."""

    EVIDENCE_429S = 2
    EVIDENCE_SHARE = 0.03
    SLOW_START = 0.01  # per accepted request
    GROWTH = 0.02  # per second, after a cut
    HEADROOM = 0.97
    RESTART = 10.0  # quiet seconds before slow start resumes
    FLOOR = 0.25  # of the configured (or first estimated) rate

    def __init__(
        self,
        rate: float | None,
        *,
        adaptive: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate if rate and rate > 0 else None
        self.ceiling = self.rate
        self.adaptive = adaptive
        self._clock = clock
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._last_cut = -1e9
        self._cut_level: float | None = None  # the rate that drew the last cut
        self._floor = self.rate * self.FLOOR if self.rate else 0.0
        self._outcomes: deque[tuple[float, bool]] = deque()  # (time, throttled) over the last second
        self._pauses: deque[tuple[float, float]] = deque()  # recent (start, end) of pauses
        self._started: float | None = None  # first answer seen
        self._lock = asyncio.Lock()
        self.throttles = 0
        # told the seconds left whenever a pause starts or grows: a display shows the wait
        self.on_pause: Callable[[float], None] | None = None

    async def acquire(self) -> Ticket | None:
        """Wait for this request's slot, and until any pause (even one set meanwhile) is over."""
        while True:
            async with self._lock:
                now = self._clock()
                start = max(now, self._paused_until)
                if self.rate is not None:
                    start = max(start, self._next_slot)
                    self._next_slot = start + 1.0 / self.rate
            delay = start - self._clock()
            if delay <= 0:
                return None
            await asyncio.sleep(delay)
            if self._clock() >= self._paused_until:
                return None

    def pause(self, seconds: float) -> None:
        """Hand out no slot for ``seconds`` (a Retry-After or a blocked token)."""
        now = self._clock()
        until = now + max(0.0, seconds)
        if until > self._paused_until:
            self._pauses.append((max(now, self._paused_until), until))
            while self._pauses and self._pauses[0][1] < now - 2.0:
                self._pauses.popleft()
            self._paused_until = until
            self._next_slot = max(self._next_slot, until)
            if self.on_pause is not None:
                self.on_pause(until - now)

    def backoff(self, seconds: float) -> None:
        """A plain 429's retry delay: this pacer hands out no slot meanwhile."""
        self.pause(seconds)

    def release(self, ticket: Ticket | None) -> None:
        """The request of ``ticket`` is over, whatever its outcome (nothing to do here)."""

    @property
    def limit_found(self) -> bool:
        """Whether the rate was cut because of 429s (it then sits below a limit it met)."""
        return self._last_cut > -1e9

    def on_throttled(self, ticket: Ticket | None = None, *, told_to_wait: bool = False) -> bool:
        """The server answered 429: slow down if adaptive and the evidence says so.

        Returns whether the 429 looks like a blocked token (never, for this pacer)."""
        self.throttles += 1
        now = self._clock()
        self._record(now, throttled=True)
        if not self.adaptive:
            return False
        answers = len(self._outcomes)
        throttled = sum(1 for _, t in self._outcomes if t)
        enough = throttled >= self.EVIDENCE_429S and throttled >= self.EVIDENCE_SHARE * answers
        if not (enough or told_to_wait):
            return False
        spacing = 4.0 / self.rate if self.rate else 0.25
        if now - self._last_cut < max(0.25, spacing):
            return False
        self._last_cut = now
        accepted = answers - throttled
        if self.rate is None:
            # accepted per second of the window that was not spent paused (a young run: since start)
            since = max(now - 1.0, self._started)
            paused = sum(max(0.0, min(e, now) - max(s, since)) for s, e in self._pauses)
            self.rate = max(1.0, accepted / max(0.05, now - since - paused))
            self._floor = self.rate * self.FLOOR
        else:
            factor = min(0.9, max(0.5, accepted / answers))
            self._cut_level = self.rate
            self.rate = max(self._floor, self.rate * factor)
        return False

    def on_success(self, ticket: Ticket | None = None) -> None:
        """A request went through: probe a little faster if adaptive."""
        now = self._clock()
        self._record(now, throttled=False)
        if not self.adaptive or self.rate is None:
            return
        quiet = now - self._last_cut
        if quiet < 4.0 / self.rate:
            return
        limit = self.ceiling or float("inf")
        if self._cut_level is not None and quiet >= self.RESTART:
            self._cut_level = None
        if self._cut_level is None:
            self.rate = min(limit, self.rate * (1 + self.SLOW_START))
            return
        # one accepted request is 1/rate seconds of traffic: +GROWTH per second in all
        grown = self.rate + self.GROWTH
        self.rate = min(limit, max(self.rate, min(self._cut_level * self.HEADROOM, grown)))

    def _record(self, now: float, *, throttled: bool) -> None:
        if self._started is None:
            self._started = now
        self._outcomes.append((now, throttled))
        while self._outcomes and self._outcomes[0][0] < now - 1.0:
            self._outcomes.popleft()
