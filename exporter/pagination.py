"""Pure paging state machines: a page goes in, the next request's parameters come out. No I/O.

They are shared by the sequential and the parallel (id-range) walks and tested without HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .errors import PaginationError


@dataclass(frozen=True)
class Keep:
    """Which rows of a page to keep: ``rows[start:stop]``."""

    start: int
    stop: int

    @property
    def count(self) -> int:
        return max(0, self.stop - self.start)


@dataclass
class KeysetWalker:
    """Walks a list paged by an exclusive ``last_id`` cursor in ascending id order.

    Tradesync: ``GET /accounts?order=asc&limit=3`` -> ids 101, 105, 110 (meta.count 3, meta.limit 3),
    then ``&last_id=110`` -> 111, 130, 131, then ``&last_id=131`` -> 140 (1 < 3: stop).

    ``start_after`` and ``stop_at`` bound the walk to the id range ``(start_after, stop_at]`` so that
    several walkers can split one collection; rows above ``stop_at`` are dropped and end the walk.
    Guards: ids that go backwards inside a page, or a page that does not move past the cursor, raise
    :class:`PaginationError`; rows at or below the cursor (an overlapping page) are dropped and counted.
    """

    page_size: int
    start_after: int | None = None
    stop_at: int | None = None
    cursor: int | None = None
    done: bool = False
    pages: int = 0
    rows: int = 0
    overlap_dropped: int = 0

    def __post_init__(self) -> None:
        if self.page_size < 1:
            raise ValueError("page_size must be >= 1")
        if self.cursor is None:
            self.cursor = self.start_after
        if self.stop_at is not None and self.cursor is not None and self.cursor >= self.stop_at:
            self.done = True

    def next_params(self) -> dict[str, str]:
        limit = self.page_size
        if self.stop_at is not None and self.cursor is not None:
            # ids are unique integers, so (cursor, stop_at] cannot hold more rows than its width
            limit = max(1, min(limit, self.stop_at - self.cursor))
        params = {"order": "asc", "limit": str(limit)}
        if self.cursor is not None:
            params["last_id"] = str(self.cursor)
        return params

    def update(self, ids: Sequence[int], requested_limit: int, meta_limit: int | None) -> Keep:
        """Record one page (its ids in served order); return the rows to keep."""
        if self.done:
            raise PaginationError("keyset walk updated after it finished")
        self.pages += 1
        n = len(ids)
        effective_limit = meta_limit if meta_limit else requested_limit
        if n == 0:
            self.done = True
            return Keep(0, 0)
        _check_ascending(ids)
        start = 0
        if self.cursor is not None:
            if int(ids[-1]) <= self.cursor:
                raise PaginationError(
                    f"keyset cursor did not advance: last_id={self.cursor} returned ids up to {int(ids[-1])}"
                )
            while start < n and int(ids[start]) <= self.cursor:
                start += 1
            self.overlap_dropped += start
        stop = n
        if self.stop_at is not None and int(ids[-1]) > self.stop_at:
            stop = _first_above(ids, self.stop_at, start)
            self.done = True
        if n > effective_limit:
            raise PaginationError(f"page holds {n} rows but the limit was {effective_limit}")
        if n < effective_limit:
            self.done = True
        last_kept = int(ids[stop - 1]) if stop > start else None
        self.cursor = int(ids[n - 1]) if stop == n else last_kept
        if self.stop_at is not None and self.cursor is not None and self.cursor >= self.stop_at:
            self.done = True
        self.rows += stop - start
        return Keep(start, stop)


def _check_ascending(ids: Sequence[int]) -> None:
    prev = None
    for value in ids:
        v = int(value)
        if prev is not None and v <= prev:
            raise PaginationError(f"ids are not strictly ascending within a page ({prev} then {v})")
        prev = v


def _first_above(ids: Sequence[int], bound: int, lo: int) -> int:
    hi = len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if int(ids[mid]) <= bound:
            lo = mid + 1
        else:
            hi = mid
    return lo


def split_id_range(lowest: int, highest: int, parts: int) -> list[tuple[int, int]]:
    """Split the ids ``[lowest, highest]`` into ``parts`` walks ``(start_after, stop_at]``.

    >>> split_id_range(10, 19, 3)
    [(9, 12), (12, 15), (15, 19)]
    """
    if highest < lowest:
        return []
    width = highest - lowest + 1
    parts = max(1, min(parts, width))
    bounds = [lowest - 1 + (width * i) // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts)]


@dataclass
class OffsetWalker:
    """Walks a bare-array list paged by ``limit``/``offset`` (TraderEvolution).

    ``GET /accounts?limit=2&offset=0`` -> 2 rows, ``offset=2`` -> 2 rows, ``offset=4`` -> 1 row: stop.
    A page whose ids equal the previous page's (a server that ignores ``offset``) raises
    :class:`PaginationError`; rows whose id was already seen in this walk are dropped and counted.
    """

    page_size: int
    offset: int = 0
    done: bool = False
    pages: int = 0
    rows: int = 0
    duplicates_dropped: int = 0
    _previous: tuple[int, ...] | None = None
    _seen: set[int] = field(default_factory=set)

    def next_params(self) -> dict[str, str]:
        return {"limit": str(self.page_size), "offset": str(self.offset)}

    def update(self, ids: Sequence[int | None]) -> list[int]:
        """Record one page; return the indexes of rows to keep (first sight of each id)."""
        if self.done:
            raise PaginationError("offset walk updated after it finished")
        self.pages += 1
        n = len(ids)
        key = tuple(i for i in ids if i is not None)
        if n and self._previous is not None and key and key == self._previous:
            raise PaginationError(
                f"the server returned the same page for offset {self.offset - n} and {self.offset}; "
                "it seems to ignore 'offset'"
            )
        keep: list[int] = []
        for index, row_id in enumerate(ids):
            if row_id is None:
                keep.append(index)
            elif row_id in self._seen:
                self.duplicates_dropped += 1
            else:
                self._seen.add(row_id)
                keep.append(index)
        self._previous = key
        self.offset += n
        self.rows += len(keep)
        if n < self.page_size:
            self.done = True
        return keep
