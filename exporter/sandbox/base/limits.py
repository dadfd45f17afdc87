"""Rate limits on the monotonic wall clock: token buckets per key, and blocking of repeat offenders."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """Classic token bucket on the monotonic wall clock; ``rate <= 0`` disables it.

    ``now`` (optional) starts the bucket at a caller's instant, so a caller that reads the clock
    once per request never sees time run backwards between creating a bucket and taking from it.
    """

    rate: float
    burst: float
    now: float | None = None
    tokens: float = field(init=False)
    stamp: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)
        self.stamp = time.monotonic() if self.now is None else self.now

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
    """One token bucket per key (an API key, or a (token, collection) pair); rate and burst may
    change between calls."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[Hashable, TokenBucket] = {}

    def take(self, key: Hashable, rate: float | None = None, burst: float | None = None,
             now: float | None = None) -> float:
        """Take a token for ``key``: 0.0 if allowed, else seconds until one is due."""
        self.rate = self.rate if rate is None else rate
        self.burst = self.burst if burst is None else burst
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        bucket.rate, bucket.burst = self.rate, self.burst
        return bucket.take(now)

    def reset(self) -> None:
        self._buckets.clear()

    @staticmethod
    def retry_after_seconds(wait_s: float) -> int:
        # Retry-After carries whole seconds; never advertise 0 for a real shortage.
        return max(1, math.ceil(wait_s))


class BlockingRateLimiter:
    """A token bucket per (caller, collection); ``threshold`` rejected calls of one caller within
    ``window_s`` block that caller, every collection, for ``duration_s``.

    :meth:`check` answers None when the call may proceed, else the whole seconds to advertise in
    ``Retry-After``: the rest of a block, or 1 for a single violation.
    """

    def __init__(self, rate: float, burst: float, threshold: int, duration_s: float,
                 window_s: float = 60.0) -> None:
        self.rate = float(rate)
        self.threshold = threshold
        self.duration_s = float(duration_s)
        self.window_s = window_s
        self._buckets = KeyedRateLimiter(self.rate, float(burst))
        self._violations: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}
        self.blocks = 0  # callers blocked so far, ended blocks included

    def check(self, caller: str, collection: str, now: float) -> int | None:
        if self.rate <= 0:
            return None
        until = self._blocked_until.get(caller)
        if until is not None and now < until:
            return max(1, math.ceil(until - now))
        if self._buckets.take((caller, collection), now=now) == 0.0:
            return None
        return self._violation(caller, now)

    def _violation(self, caller: str, now: float) -> int:
        window = self._violations.setdefault(caller, deque())
        window.append(now)
        while window and window[0] <= now - self.window_s:
            window.popleft()
        if 0 < self.threshold <= len(window):
            self._blocked_until[caller] = now + self.duration_s
            self.blocks += 1
            window.clear()  # a fresh count starts once the block ends
            return max(1, math.ceil(self.duration_s))
        return 1

    def blocked_count(self, now: float) -> int:
        return sum(1 for until in self._blocked_until.values() if until > now)
