"""The cursor of an incremental table as pure functions (exporter/incremental.py), no HTTP."""

from __future__ import annotations

import copy

import pyarrow as pa
import pytest

from exporter.checkpoint import merge_progress
from exporter.incremental import (
    cursor_after_walk,
    cursor_key,
    next_cursor,
    observe,
    pick_latest,
    seed_walk_state,
    with_observation,
    written_rows,
)
from exporter.walk import Page, combine


def trades(*rows: tuple[int, str | None]) -> pa.Table:
    return pa.table({"id": pa.array([r[0] for r in rows], pa.int64()),
                     "state": pa.array([r[1] for r in rows], pa.string())})


def test_filtered_tables_do_not_continue_cursors_of_the_flawed_kind() -> None:
    assert cursor_key("trades", "all") == "trades"
    closed = cursor_key("trades", "closed")
    assert closed not in ("trades", "trades&state=closed")  # the key cursors had before issue 17
    assert len({cursor_key("trades", s) for s in ("all", "open", "closed")}) == 3
    published = [
        {"key": "trades&state=closed", "last_id": 90, "open_ids": [], "run_id": "20250103T000000000000Z-c"},
        {"key": closed, "last_id": 50, "open_ids": [7], "run_id": "20250101T000000000000Z-a"},
        {"key": closed, "last_id": 60, "open_ids": [8], "run_id": "20250102T000000000000Z-b"},
        {"key": "trades", "last_id": 99, "open_ids": [], "run_id": "20250104T000000000000Z-d"},
    ]
    assert pick_latest(published, closed) == published[2]
    assert pick_latest(published, cursor_key("trades", "open")) is None


def test_seeding_from_the_previous_cursor() -> None:
    assert seed_walk_state(None) == {}  # the first run walks everything
    previous = {"key": "trades", "last_id": 120, "open_ids": [3, 9], "run_id": "r"}
    assert seed_walk_state(previous) == {"new": {"after": 120}, "refresh": {"ids": [3, 9]}}


def test_observe_counts_every_row_that_can_still_change() -> None:
    assert observe(trades()) == (None, [])
    # an unknown or missing state may still change: refreshing it once more is cheap, losing it is not
    assert observe(trades((5, "closed"), (9, "open"), (7, None), (6, "pending"))) == (9, [6, 7, 9])


def test_next_cursor_takes_the_highest_bound_and_every_open_id() -> None:
    observed = [(40, [31, 40]), (None, []), (25, [2])]
    assert next_cursor("k", 30, observed, 55) == {"key": "k", "last_id": 55, "open_ids": [2, 31, 40]}
    # no new trade since the previous run (the probe found nothing above it): the cursor stays
    assert next_cursor("k", 60, [(20, [20])], 58)["last_id"] == 60
    assert next_cursor("k", None, [], None) == {"key": "k", "last_id": None, "open_ids": []}


def test_a_resumed_run_keeps_the_observations_of_its_durable_pages() -> None:
    """Pages are written, their progress (with the observation) becomes true at a checkpoint; a
    crash loses what came after it, and those rows are fetched again (maybe in a newer state)."""
    walk = seed_walk_state({"last_id": 100, "open_ids": [10, 20], "run_id": "r0"})
    walk["new"]["highest"] = 180  # the probe at the start of the run

    def written(state: dict, progress: dict, table: pa.Table) -> None:
        merge_progress(state, with_observation(progress, table))

    # attempt 1: two pages durable (the refresh, and ids 101..140), then one page written, then a crash
    written(walk, {"refresh": {"done_batches": 1}}, trades((10, "closed"), (20, "open")))
    written(walk, {"new": {"ranges": {"100": {"cursor": 140}}}}, trades((101, "closed"), (130, "open")))
    checkpoint = copy.deepcopy(walk)  # saved
    written(walk, {"new": {"ranges": {"100": {"cursor": 160}}}}, trades((150, "open"), (160, "closed")))

    # attempt 2 resumes from the checkpoint: 141..180 again; trade 150 closed meanwhile
    resumed = copy.deepcopy(checkpoint)
    written(resumed, {"new": {"ranges": {"100": {"cursor": 180}}}},
            trades((150, "closed"), (160, "closed"), (175, "open")))
    assert cursor_after_walk("trades", resumed) == {"key": "trades", "last_id": 180, "open_ids": [20, 130, 175]}


def test_written_rows_of_each_filter() -> None:
    # the previous cursor ended at 100: 10 and 20 are refreshes, 150 and above are new
    page = trades((10, "closed"), (20, "open"), (150, "closed"), (160, "open"), (170, None))
    ids = {f: written_rows(page, f, 100).column("id").to_pylist() for f in ("all", "open", "closed")}
    assert ids["all"] == [10, 20, 150, 160, 170]
    assert ids["closed"] == [10, 150]
    # open: a refreshed trade is in the table already, so its close is written too; a new trade
    # already closed was never open at a run
    assert ids["open"] == [10, 20, 160]
    assert written_rows(page, "open", None).column("id").to_pylist() == [20, 160]  # a first run


def test_combined_pages_keep_their_context() -> None:
    a = Page("trades", objects=[b'{"id":1}'], ids=[1], context={"after": 7}, progress={"x": 1})
    b = Page("trades", objects=[b'{"id":2}'], ids=[2], context={"after": 7}, progress={"y": 2})
    merged = combine([a, b])
    assert merged.context == {"after": 7} and merged.ids == [1, 2] and merged.progress == {"x": 1, "y": 2}
    with pytest.raises(ValueError, match="different contexts"):
        combine([a, Page("trades", objects=[b'{"id":3}'], ids=[3], context={"after": 9})])
