"""A pacer that finds a server's rate limit from below, for APIs that punish violations.

TraderEvolution counts every request over its per-collection limit and blocks the whole token
after a few of them, answering 429 ``2.147.1.27`` both to a single violation and to every call of a
blocked token. Testing the limit must therefore cost few violations, and a plain violation must not
be mistaken for a block (a long pause) nor a block for a violation (hammering a blocked token).
The rule (constants below; ``bench/pacer_model.py`` shows how they were chosen):

- start at a documented safe rate (or the configured ``rps``, which is also the ceiling) and climb
  CLIMB (10%) per second, but only while requests queue for their slot and none went unused in
  the last second: a rate nobody uses teaches nothing;
- a 429 of a request sent at rate ``r`` since the last cut (older ones are in-flight echoes of that
  cut and change nothing): the rate drops to CUT x ``r`` (0.8) and growth stops at HEADROOM (0.9)
  x the lowest rate that drew a 429. The server's bucket was empty at both this 429 and the one
  before; if every slot in between was used, the requests accepted in between, divided by that
  time, measure the limit (exactly, unless the bucket filled up meanwhile: then they are less). If
  that measure is at least TRUST (half) of ``r``, the rate drops to MARGIN (0.95) x the measure
  if lower, and stays there;
- after a 429 the collection waits WAIT (0.5 s, or two slots if longer: the bucket then holds a
  token again), then one request goes alone: the probe. Accepted, the collection resumes at its
  new rate. Refused, the token is blocked: :meth:`on_throttled` says so, the client pauses the
  whole source (escalating), then the collection probes again. Without a measure to go by, a block
  also cuts the rate once more;
- after a cut, growth is GROWTH (0.5%) per second up to the cap; after RELAX (120 s) without a
  429 the cap rises 5%, so a limit raised on the server, or a cut caused by someone else's
  traffic, is slowly won back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .ratelimit import Ticket


class ProbingPacer:
    """Evenly spaced slots at ``rate`` per second, found by probing; see the module docstring."""

    CLIMB = 0.10  # per second, until the first 429
    GROWTH = 0.005  # per second, after a 429
    CUT = 0.8
    HEADROOM = 0.9
    MARGIN = 0.95
    WAIT = 0.5
    RELAX = 120.0
    UNUSED = 0.1  # share of unused slot time above which a measure between two 429s is not trusted
    TRUST = 0.5  # nor is a measure below this share of the rate that drew the 429

    def __init__(self, rate: float | None, *, start: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ceiling = rate if rate and rate > 0 else None
        self.rate = self.ceiling or start
        self.adaptive = True
        self._floor = self.rate * 0.1
        self._clock = clock
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._epoch = 0  # cuts so far: a ticket of an older epoch was sent before the last cut
        self._climbing = True
        self._limit: float | None = None  # the lowest rate that drew a 429
        self._cap: float | None = None  # growth stops here (besides the ceiling)
        self._probe_due = False
        self._probe: Ticket | None = None  # the probe on its way
        self._blocked = False  # a probe was refused and none accepted since
        self._measured: float | None = None  # the last trusted measure of the limit
        self._answered = asyncio.Event()
        self._lock = asyncio.Lock()
        self._accepted = 0
        self._unused = 0.0  # seconds during which a free slot was not taken
        self._empty: tuple[float, int, float] | None = None  # (time, accepted, unused) at the last cut
        self._bound_at = -1e9  # last time a request queued for its slot
        self._idle_at = -1e9  # last time a slot went unused
        self._last_change = -1e9  # last cut or relaxation of the cap
        self.throttles = 0
        self.cuts = 0
        # told the seconds left whenever a pause starts or grows: a display shows the wait
        self.on_pause: Callable[[float], None] | None = None

    @property
    def limit_found(self) -> bool:
        """Whether a 429 was met: the rate then sits below a limit, not just where climbing stopped."""
        return self._limit is not None

    async def acquire(self) -> Ticket:
        """Wait for this request's slot, any pause, and the answer to a probe on its way."""
        if self._lock.locked():
            self._bound_at = self._clock()  # requests queue up: the pace is what holds them back
        # one waiter at a time, in arrival order: each slot is spaced at the rate of its moment
        # (reserving slots ahead would keep a cut or a climb from applying to the queued ones)
        async with self._lock:
            waited = False
            while True:
                if self._probe is not None:
                    await self._answered.wait()
                    continue
                now = self._clock()
                free = max(self._next_slot, self._paused_until)
                if free > now:
                    self._bound_at = now
                    waited = True
                    await asyncio.sleep(free - now)
                    continue  # a pause, a cut or a probe may have come meanwhile
                break
            if not waited:
                self._unused += now - free
                if now - free > 0.5 / self.rate:
                    self._idle_at = now  # a slot went unused: something else holds the requests back
            # keep the cadence despite the timer's wake-up delay, without a burst after a late one
            start = free if waited and now - free < 0.5 / self.rate else now
            self._next_slot = start + 1.0 / self.rate
            ticket = Ticket(self._epoch, self.rate, self._probe_due)
            if ticket.probe:
                self._probe_due = False
                self._probe = ticket
                self._answered = asyncio.Event()
            return ticket

    def pause(self, seconds: float) -> None:
        """Hand out no slot for ``seconds`` (a Retry-After or a blocked token)."""
        now = self._clock()
        until = now + max(0.0, seconds)
        if until > self._paused_until:
            self._paused_until = until
            self._next_slot = max(self._next_slot, until)
            if self.on_pause is not None:
                self.on_pause(until - now)

    def backoff(self, seconds: float) -> None:
        """A plain 429's retry delay: nothing to do, the wait before the probe already holds back."""

    def release(self, ticket: Ticket | None) -> None:
        """The request of ``ticket`` is over; a probe that got no verdict (an error) is sent again."""
        if ticket is not None and ticket is self._probe:
            self._end_probe()
            self._probe_due = True

    def on_success(self, ticket: Ticket | None = None) -> None:
        now = self._clock()
        self._accepted += 1
        if ticket is not None and ticket is self._probe:
            self._end_probe()
            self._blocked = False
        if now - self._bound_at > 2.0 / self.rate or now - self._idle_at < 1.0:
            return  # the pace is not what holds the requests back: nothing to learn
        if self._cap is not None and now - self._last_change >= self.RELAX:
            self._cap *= 1.05
            self._last_change = now
        # +x per accepted request is x per second of the rate: exponential growth in time
        grown = self.rate + (self.CLIMB if self._climbing else self.GROWTH)
        top = min(x for x in (self.ceiling, self._cap, float("inf")) if x is not None)
        self.rate = max(self.rate, min(grown, top))

    def on_throttled(self, ticket: Ticket | None = None, *, told_to_wait: bool = False) -> bool:
        """A 429. Returns True when it answered the probe: the token is blocked, pause the source."""
        self.throttles += 1
        now = self._clock()
        if ticket is not None and ticket is self._probe:
            self._end_probe()
            self._probe_due = True
            self._empty = None  # the bucket refills during the block: no measure across it
            if not self._blocked and self._measured is None:
                # enough violations to block the token, and no measure of the limit to go by: the
                # rate that one cut left is no safer, cut again (once per block)
                self.rate = max(self._floor, self.rate * self.CUT)
                self._cap = max(self.rate, min(self._cap or self.rate, self.rate / self.CUT * self.HEADROOM))
            self._blocked = True
            return True
        if ticket is not None and ticket.epoch != self._epoch:
            return False  # sent before the last cut: an echo of the 429 that drew it
        self._cut(now, ticket.rate if ticket is not None else self.rate)
        return False

    def _cut(self, now: float, rate: float) -> None:
        self._epoch += 1
        self.cuts += 1
        self._climbing = False
        self._limit = rate if self._limit is None else min(self._limit, rate)
        new, cap = rate * self.CUT, self._limit * self.HEADROOM
        measured = self._measure(now)
        # below half the failing rate, the measure missed refill (a bucket smaller than the wait's)
        if measured is not None and measured >= self.TRUST * rate:
            new, cap = min(new, measured * self.MARGIN), min(cap, measured * self.MARGIN)
            self._measured = measured
        self.rate = max(self._floor, new)
        self._cap = max(self.rate, cap)
        self._empty = (now, self._accepted, self._unused)
        self._last_change = now
        # long enough for the bucket to hold a token for the probe, short enough not to overflow it
        self.pause(max(self.WAIT, 2.0 / self.rate))
        self._probe_due = True

    def _measure(self, now: float) -> float | None:
        """Requests accepted per second since the last 429, when every slot in between was used."""
        if self._empty is None:
            return None
        since, accepted, unused = self._empty
        span = now - since
        if span <= 0 or self._unused - unused > self.UNUSED * span:
            return None
        # the bucket held under one token at both 429s: all but a fraction of one request is refill
        return (self._accepted - accepted) / span

    def _end_probe(self) -> None:
        self._probe = None
        self._answered.set()
