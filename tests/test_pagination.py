"""Pure paging rules: keyset and offset walkers, and the id-range split (no HTTP)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.errors import PaginationError
from exporter.pagination import KeysetWalker, OffsetWalker, split_id_range


def serve(ids: list[int], params: dict[str, str]) -> tuple[list[int], int]:
    """A reference keyset server: ascending ids above last_id, at most limit of them."""
    limit = int(params["limit"])
    last = int(params.get("last_id", -1))
    page = [i for i in ids if i > last][:limit]
    return page, limit


def walk(ids: list[int], page_size: int, start_after: int | None = None, stop_at: int | None = None) -> list[int]:
    walker = KeysetWalker(page_size, start_after=start_after, stop_at=stop_at)
    out: list[int] = []
    requests = 0
    while not walker.done:
        page, limit = serve(ids, walker.next_params())
        keep = walker.update(page, limit, limit)
        out.extend(page[keep.start : keep.stop])
        requests += 1
        assert requests < 10_000, "walk did not terminate"
    return out


def test_documented_example_with_limit_3() -> None:
    ids = [101, 105, 110, 111, 130, 131, 140]
    walker = KeysetWalker(3)
    assert walker.next_params() == {"order": "asc", "limit": "3"}
    assert walker.update([101, 105, 110], 3, 3).count == 3
    assert walker.next_params()["last_id"] == "110"
    walker.update([111, 130, 131], 3, 3)
    walker.update([140], 3, 3)
    assert walker.done and walker.cursor == 140
    assert walk(ids, 3) == ids


def test_exact_multiple_of_limit_ends_on_empty_page() -> None:
    walker = KeysetWalker(2)
    walker.update([1, 2], 2, 2)
    walker.update([3, 4], 2, 2)
    assert not walker.done
    assert walker.update([], 2, 2).count == 0
    assert walker.done and walker.cursor == 4  # an empty page never erases the checkpoint


def test_stop_rule_uses_effective_meta_limit() -> None:
    # asked for 1000, the server clamps to 500 and says so: a full page of 500 is not the end
    walker = KeysetWalker(1000)
    walker.update(list(range(1, 501)), 1000, 500)
    assert not walker.done


def test_cursor_that_does_not_advance_is_an_error() -> None:
    walker = KeysetWalker(3)
    walker.update([1, 2, 3], 3, 3)
    with pytest.raises(PaginationError, match="did not advance"):
        walker.update([1, 2, 3], 3, 3)


def test_ids_going_backwards_is_an_error() -> None:
    walker = KeysetWalker(3)
    with pytest.raises(PaginationError, match="ascending"):
        walker.update([5, 4, 6], 3, 3)


def test_overlapping_page_is_deduplicated() -> None:
    walker = KeysetWalker(3)
    walker.update([1, 2, 3], 3, 3)
    keep = walker.update([3, 4, 5], 3, 3)
    assert (keep.start, keep.stop) == (1, 3)
    assert walker.overlap_dropped == 1


def test_page_larger_than_limit_is_an_error() -> None:
    with pytest.raises(PaginationError, match="limit"):
        KeysetWalker(2).update([1, 2, 3], 2, 2)


def test_range_walk_stops_at_its_end_and_asks_no_more_than_the_width() -> None:
    walker = KeysetWalker(1000, start_after=100, stop_at=103)
    assert walker.next_params()["limit"] == "3"
    keep = walker.update([101, 102, 104], 3, 3)
    assert (keep.start, keep.stop) == (0, 2) and walker.done


def test_split_covers_range_exactly() -> None:
    assert split_id_range(10, 19, 3) == [(9, 12), (12, 15), (15, 19)]
    assert split_id_range(5, 5, 8) == [(4, 5)]
    assert split_id_range(7, 3, 2) == []


@settings(max_examples=150, deadline=None)
@given(
    ids=st.lists(st.integers(min_value=1, max_value=5000), unique=True, max_size=300).map(sorted),
    page_size=st.integers(min_value=1, max_value=50),
    parts=st.integers(min_value=1, max_value=12),
)
def test_parallel_ranges_equal_sequential_walk(ids: list[int], page_size: int, parts: int) -> None:
    """Property: splitting [min, max] into ranges and walking each gives the sequential rows."""
    sequential = walk(ids, page_size)
    assert sequential == ids
    if not ids:
        return
    combined: list[int] = []
    for start_after, stop_at in split_id_range(ids[0], ids[-1], parts):
        combined.extend(walk(ids, page_size, start_after, stop_at))
    assert combined == sequential


@settings(max_examples=60, deadline=None)
@given(
    ids=st.lists(st.integers(min_value=1, max_value=3000), unique=True, min_size=1, max_size=200).map(sorted),
    new=st.lists(st.integers(min_value=3001, max_value=4000), unique=True, max_size=50).map(sorted),
    parts=st.integers(min_value=1, max_value=6),
)
def test_ids_created_during_the_walk_are_not_half_included(ids: list[int], new: list[int], parts: int) -> None:
    """The range is fixed at the start: rows created later (higher ids) never leak in."""
    grown = ids + new
    combined: list[int] = []
    for start_after, stop_at in split_id_range(ids[0], ids[-1], parts):
        combined.extend(walk(grown, 7, start_after, stop_at))
    assert combined == ids


def test_offset_walker_stops_on_short_page_and_rejects_ignored_offset() -> None:
    walker = OffsetWalker(2)
    assert walker.next_params() == {"limit": "2", "offset": "0"}
    assert walker.update([1, 2]) == [0, 1]
    assert walker.next_params()["offset"] == "2"
    with pytest.raises(PaginationError, match="ignore"):
        walker.update([1, 2])


def test_offset_walker_drops_ids_seen_before() -> None:
    walker = OffsetWalker(3)
    walker.update([1, 2, 3])
    assert walker.update([3, 4]) == [1]
    assert walker.duplicates_dropped == 1 and walker.done


def test_offset_walker_empty_page_ends() -> None:
    walker = OffsetWalker(2)
    walker.update([1, 2])
    assert walker.update([]) == []
    assert walker.done
