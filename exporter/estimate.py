"""How far a walk has got and when it will end: facts from the walks, estimates from the facts.

A walk keeps a :class:`Coverage` up to date as it goes: units covered out of a total it knows (or
``None`` while it does not). Units depend on the walk: a keyset walk counts ids of the span it
probed at its start (ids are sparse, so its share is an estimate of the share of rows), a fan-out
counts the lists it walks (an account's operations, a report's date window). The reporter samples
coverages and an :class:`Estimate` turns the samples into a percent that never goes backwards or
over 100%, a rate and the time left. Nothing here draws anything or does any I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple


@dataclass(slots=True)
class Coverage:
    """What one walk has covered so far; updated by the walk, read by the reporter (any thread:
    each field is one atomic read)."""

    done: float = 0.0
    total: float | None = None  # None: not known (yet)
    planned: bool = False  # the walk knows what it will walk (a known total may still be None)
    estimated: bool = False  # a share of an id span, not a count
    unit: str = ""  # what ``done`` counts, worth showing as "5/13 lists"; "" for id spans
    # parts walked side by side (new ids and refreshed ids): the walk ends with the slower one
    parts: tuple[Coverage, ...] = ()

    def read(self) -> Reading:
        if not self.parts:
            return Reading(self.done, self.total, self.planned, self.estimated, self.unit)
        readings = [part.read() for part in self.parts]
        planned = all(r.planned for r in readings)
        estimated = any(r.estimated for r in readings)
        if any(r.total is None for r in readings):
            return Reading(0.0, None, planned, estimated, "")
        # the share of the part least far along: its units (ids of a span, ids asked for) cannot be
        # added to the other's, and since the parts run at once, it is the one that decides the end
        return Reading(min(_share(r) for r in readings), 1.0, planned, estimated, "")


class Reading(NamedTuple):
    done: float
    total: float | None
    planned: bool
    estimated: bool
    unit: str


def _share(reading: Reading) -> float:
    total = reading.total
    return 1.0 if not total or total <= 0 else min(1.0, max(0.0, reading.done / total))


def id_span_covered(state: Mapping[str, Any]) -> tuple[int, int]:
    """``(covered, total)`` ids of a keyset walk's state: each range ``(start_after, stop_at]``
    counts up to its cursor, a finished range counts whole. An empty collection covers 0 of 0."""
    lowest, highest = state.get("lowest"), state.get("highest")
    if lowest is None or highest is None:
        return 0, 0
    total = int(highest) - int(lowest) + 1
    covered = 0
    for piece in state.get("ranges", {}).values():
        reached = piece["stop_at"] if piece["done"] else piece["cursor"]
        covered += max(0, min(int(reached), int(piece["stop_at"])) - int(piece["start_after"]))
    return min(covered, total), total


def count_done(progress: Iterable[Mapping[str, Any]]) -> int:
    """Lists of a fan-out whose checkpointed progress says done."""
    return sum(1 for p in progress if p.get("done"))


class Estimate:
    """One stream's samples over time: its share done (monotone, at most 1), rate and time left.

    The rate is measured over the last ``window`` seconds (a rate limit that tightens shows in the
    time left within that window), from this run's samples only: a resumed run's head start is in
    the share, not in the rate. Until ``min_span`` seconds of progress are measured, no time left.
    """

    def __init__(self, now: float, rows: int = 0, *, window: float = 120.0, min_span: float = 1.0) -> None:
        self.window = window
        self.min_span = min_span
        self.started = now
        self.start_rows = rows
        self.share: float | None = None
        self.reading: Reading | None = None
        self.rows = rows
        self._samples: deque[tuple[float, float, int]] = deque()  # (time, units done, rows)
        self._base: tuple[float, float] | None = None  # (time, units done) once the walk knew its plan

    def observe(self, now: float, reading: Reading, rows: int) -> None:
        self.reading, self.rows = reading, rows
        if reading.total is not None:
            share = _share(reading)
            self.share = share if self.share is None else max(self.share, share)
        samples = self._samples
        if reading.planned and self._base is None:
            # what the walk found at its start (a resumed run's checkpoint) is no progress made now
            self._base = (now, reading.done)
        if not samples or now - samples[-1][0] >= self.min_span / 4:  # not every tick: a bounded deque
            samples.append((now, reading.done, rows))
        while len(samples) > 2 and samples[1][0] <= now - self.window:
            samples.popleft()

    def rows_per_second(self, now: float) -> float:
        if not self._samples:
            return 0.0
        t0, _, rows0 = self._samples[0]
        return max(0.0, (self.rows - rows0) / max(now - t0, 1e-3))

    def seconds_left(self, now: float) -> float | None:
        """``None`` while unknown: no total, or too little progress measured to tell a rate."""
        reading = self.reading
        if reading is None or reading.total is None or self.share is None:
            return None
        if self.share >= 1.0:
            return 0.0
        t0, done0, _ = self._samples[0]
        if self._base is not None and self._base[0] > t0:
            t0, done0 = self._base
        span = now - t0  # up to now, not to the last sample: a stall lengthens the estimate
        moved = reading.done - done0
        if span < self.min_span or moved <= 0:
            return None
        left = max(0.0, reading.total - reading.done)
        return left * span / moved
