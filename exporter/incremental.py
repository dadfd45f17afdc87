"""The cursor of an incremental table, as functions over values (no I/O: the runner reads and
writes the ``_cursor.json`` files).

A cursor says where the next run starts: ``last_id`` (new rows are the ids above it) and
``open_ids`` (rows at or below it that can still change, fetched again by id). It must follow
*every* row that can still change, whatever the table's filter writes: a cursor built from the
written rows of a ``closed`` table never saw the open trades below its ``last_id``, and lost their
closes for ever (issue 17). So the walks fetch every state, each page's observation (its highest id
and the ids not yet closed) is recorded in the walk's checkpointed state as the page is written
(a resumed run keeps what its durable pages saw), and the filter only decides which rows are
written (:func:`written_rows`).

    {"key": "trades", "last_id": 37007999, "open_ids": [37001234, ...], "run_id": "…"}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

FINAL_STATE = "closed"  # a closed trade never changes again; any other state (or none) may


def cursor_key(collection: str, state_filter: str) -> str:
    """The key a table's cursors carry: a run continues only a cursor of the same table definition.

    Filtered tables carry ``cursor=all-states`` since their cursor follows every state: cursors
    written before (which skipped the open trades) are not continued, so the first run after the
    change walks everything again and writes the trades those cursors had lost.
    """
    if state_filter == "all":
        return collection
    return f"{collection}&state={state_filter}&cursor=all-states"


def pick_latest(cursors: Iterable[Mapping[str, Any]], key: str) -> dict[str, Any] | None:
    """The newest cursor with this key (``run_id`` starts with the run's start time, so it sorts)."""
    best: dict[str, Any] | None = None
    for cursor in cursors:
        if cursor.get("key") != key:
            continue
        if best is None or str(cursor.get("run_id", "")) > str(best.get("run_id", "")):
            best = dict(cursor)
    return best


def seed_walk_state(previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """The starting state of an :class:`~exporter.walk.IncrementalCollection` walk: new ids above
    the previous ``last_id``, and the previous ``open_ids`` fetched again. No cursor: everything."""
    if previous is None:
        return {}
    return {"new": {"after": previous.get("last_id")}, "refresh": {"ids": list(previous.get("open_ids", []))}}


def observe(table: pa.Table) -> tuple[int | None, list[int]]:
    """What a converted page (every row fetched, before any filter) tells the cursor: its highest
    id and the ids of the rows that can still change."""
    if table.num_rows == 0:
        return None, []
    ids = table.column("id")
    changing = pc.fill_null(pc.not_equal(table.column("state"), FINAL_STATE), True)
    return pc.max(ids).as_py(), sorted(i for i in ids.filter(changing).to_pylist() if i is not None)


def with_observation(progress: Mapping[str, Any], table: pa.Table) -> dict[str, Any]:
    """A page's progress plus its observation, under a key of its own (its lowest id: every id is
    fetched once per run) so that merging progress into the walk state accumulates them."""
    highest, changing = observe(table)
    if highest is None:
        return dict(progress)
    lowest = pc.min(table.column("id")).as_py()
    return {**progress, "observed": {str(lowest): [highest, changing]}}


def observations(walk_state: Mapping[str, Any]) -> list[tuple[int | None, list[int]]]:
    """The observations a walk state has accumulated (those of its durable pages)."""
    return [(entry[0], list(entry[1])) for entry in walk_state.get("observed", {}).values()]


def next_cursor(
    key: str,
    after: int | None,
    observed: Iterable[tuple[int | None, Iterable[int]]],
    highest: int | None,
) -> dict[str, Any]:
    """The cursor after a run that started from ``after`` (the previous ``last_id``), saw
    ``observed`` (per page: highest id, ids that can still change) and probed ``highest`` at its
    start (the snapshot bound its new-id walk covered)."""
    candidates = [c for c in (after, highest) if c is not None]
    open_ids: set[int] = set()
    for page_highest, changing in observed:
        if page_highest is not None:
            candidates.append(int(page_highest))
        open_ids.update(int(i) for i in changing)
    return {"key": key, "last_id": max(candidates, default=None), "open_ids": sorted(open_ids)}


def cursor_after_walk(key: str, walk_state: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`next_cursor` from the checkpointed state of an incremental walk."""
    new = walk_state.get("new", {})
    return next_cursor(key, new.get("after"), observations(walk_state), new.get("highest"))


def written_rows(table: pa.Table, state_filter: str, after: int | None) -> pa.Table:
    """The rows of a page that a table filtered on ``state_filter`` (all, open, closed) gets.

    ``closed``: closed rows only; a trade refreshed while still open waits for the run that sees
    it closed. ``open``: open rows, and every refreshed row (ids at or below ``after``, the previous
    cursor): those trades are in the table already, and the row showing a close keeps their latest
    state true instead of a stale ``open``.
    """
    if state_filter == "all":
        return table
    keep = pc.equal(table.column("state"), state_filter)
    if state_filter == "open" and after is not None:
        keep = pc.or_(keep, pc.less_equal(table.column("id"), after))
    return table.filter(pc.fill_null(keep, False))


# ---- a cursor on dates (balance history: daily rows per account, the last day may still change)
#
#     {"key": "balance_history", "last_date": "2025-02-03", "run_id": "…"}


def history_start(previous: Mapping[str, Any] | None, overlap_days: int) -> date | None:
    """The first day an incremental history run fetches: the day after the last published one,
    moved back ``overlap_days`` (1: the last published day again, which may have changed since).
    No cursor: None (the job's ``history_days`` / ``history_since`` decide)."""
    last = (previous or {}).get("last_date")
    if not last:
        return None
    return date.fromisoformat(str(last)) + timedelta(days=1 - overlap_days)


def seed_history(previous: Mapping[str, Any] | None, overlap_days: int) -> dict[str, Any]:
    """The starting walk state of an incremental history run: where it starts, and the previous
    last date (kept by the next cursor when this run sees no day at all)."""
    start = history_start(previous, overlap_days)
    if start is None:
        return {}
    return {"since": start.isoformat(), "previous_last_date": str(previous["last_date"])}  # type: ignore[index]


def observe_dates(progress: Mapping[str, Any], table: pa.Table) -> dict[str, Any]:
    """A page's progress plus its latest date, as a key (merged progress accumulates the set of
    distinct latest dates: a few dozen at most, whatever the number of accounts)."""
    if table.num_rows == 0:
        return dict(progress)
    latest = pc.max(table.column("date")).as_py()
    if latest is None:
        return dict(progress)
    return {**progress, "dates": {latest.isoformat(): True}}


def history_cursor(key: str, walk_state: Mapping[str, Any]) -> dict[str, Any]:
    """The cursor after a history run: the latest date any durable page held (or the previous
    cursor's, when no row arrived)."""
    seen = list(walk_state.get("dates", {}))
    previous = walk_state.get("previous_last_date")
    if previous:
        seen.append(str(previous))
    return {"key": key, "last_date": max(seen, default=None)}
