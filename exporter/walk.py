"""Walks of paged collections over HTTP: they fetch pages and hand them on, nothing more.

A walk calls ``emit(page)`` for every page (the runner converts and writes it) and keeps its own
resumable state: every :class:`Page` carries ``progress``, the state updates that become true once
that page is durable. The runner merges them into the checkpoint in the order pages are written.
A walk also keeps a :class:`~exporter.estimate.Coverage` up to date (how far it has got, in its
own units) for the reporter to show; it never draws anything itself.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .checkpoint import merge_progress
from .errors import DataError, HTTPError, RequestRejected, RetriesExhausted
from .estimate import Coverage, id_span_covered
from .http import HttpClient, Response
from .pagination import KeysetWalker, OffsetWalker, split_id_range


@dataclass
class Page:
    """One page of records on its way to the writer."""

    stream: str
    objects: Sequence[bytes] | None = None  # raw JSON objects: the exact fast route
    records: Sequence[dict[str, Any]] | None = None  # decoded records (reports, bare arrays)
    ids: Sequence[int] | None = None  # the ids a keyset walk read from ``objects``, checked later
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    progress: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        if self.objects is not None:
            return len(self.objects)
        return len(self.records or ())


Emit = Callable[[Page], Awaitable[None]]


def combine(pages: list[Page]) -> Page:
    """Several small pages of one stream as one (fan-out pages often hold a handful of rows):
    one conversion and one write instead of many. Progress deltas are applied in order."""
    if len(pages) == 1:
        return pages[0]
    progress: dict[str, Any] = {}
    for page in pages:
        merge_progress(progress, page.progress)
    first = pages[0]
    if any(page.context != first.context for page in pages):
        # a projection may depend on the context (an incremental table's filter): never guess one
        raise ValueError(f"{first.stream}: pages with different contexts cannot be combined")
    common = dict(fetched_at=pages[-1].fetched_at, progress=progress, context=first.context)
    if first.objects is not None:
        objects = [o for page in pages for o in (page.objects or ())]
        ids = None if any(p.ids is None for p in pages) else [i for p in pages for i in p.ids or ()]
        return Page(first.stream, objects=objects, ids=ids, **common)
    records = [r for page in pages for r in (page.records or ())]
    return Page(first.stream, records=records, **common)


@dataclass
class KeysetPage:
    """A decoded keyset page: raw objects, their ids in served order, and ``meta.limit``.

    ``ids`` may come from a shortcut that reads only each object's leading ``"id"`` key; the
    converter checks them against the id column it parses (:meth:`PageConverter.check_ids`)."""

    objects: Sequence[bytes | memoryview | Any]  # anything with the buffer protocol (msgspec.Raw)
    ids: list[int]
    meta_limit: int | None


KeysetDecoder = Callable[[Response], KeysetPage]


@dataclass
class KeysetCollection:
    """A collection walked by an exclusive ascending ``last_id`` cursor, split into id ranges.

    The id range is discovered first (``order=desc&limit=1`` and ``order=asc&limit=1``), so the walk
    is a snapshot of the ids that existed at its start: rows created meanwhile (above the highest
    id seen) are not half-included. The range is cut into ``4 x walkers`` pieces that ``walkers``
    tasks take in turn, each piece walked with ``order=asc&last_id=<piece start>`` up to its end.
    """

    stream: str
    path: str
    decode: KeysetDecoder
    page_size: int = 1000
    params: dict[str, str] = field(default_factory=dict)
    walkers: int = 0  # 0: chosen from the concurrency and rate limits
    pieces_per_walker: int = 4

    async def run(
        self, client: HttpClient, emit: Emit, state: dict[str, Any], coverage: Coverage | None = None
    ) -> None:
        coverage = coverage if coverage is not None else Coverage()
        coverage.estimated = True
        if "ranges" not in state:
            await self._plan(client, state)
        ranges: dict[str, dict[str, Any]] = state["ranges"]
        # the probed span, and how much of it the checkpoint already covers (a resumed run)
        coverage.done, coverage.total = id_span_covered(state)
        coverage.planned = True
        todo = [key for key, r in ranges.items() if not r["done"]]
        walkers = min(len(todo), self._choose_walkers(client, state))
        next_index = 0

        async def worker() -> None:
            nonlocal next_index
            while next_index < len(todo):
                key = todo[next_index]
                next_index += 1
                await self._walk_range(client, emit, key, ranges[key], coverage)

        if walkers:
            async with asyncio.TaskGroup() as group:
                for _ in range(walkers):
                    group.create_task(worker())

    async def _plan(self, client: HttpClient, state: dict[str, Any]) -> None:
        started = time.monotonic()
        highest = await self._edge(client, "desc")
        state["probe_seconds"] = time.monotonic() - started
        after = state.get("after")  # an incremental run: only ids above the previous run's highest
        if after is not None:
            lowest = int(after) + 1 if highest is not None and highest > int(after) else None
        else:
            lowest = await self._edge(client, "asc") if highest is not None else None
        state["lowest"], state["highest"] = lowest, highest
        pieces: list[tuple[int, int]] = []
        if lowest is not None and highest is not None:
            walkers = self._choose_walkers(client, state)
            # ids are unique: a piece narrower than a page is one request anyway, so a short range
            # (an incremental run) gets few pieces and few extra requests
            most = math.ceil((highest - lowest + 1) / self.page_size)
            pieces = split_id_range(lowest, highest, max(1, min(walkers * self.pieces_per_walker, most)))
        state["ranges"] = {
            f"{a}": {"start_after": a, "stop_at": b, "cursor": a, "done": False} for a, b in pieces
        }

    async def _edge(self, client: HttpClient, order: str) -> int | None:
        page = await client.request(
            "GET", self.path, params={**self.params, "order": order, "limit": "1"}, decode=self.decode
        )
        return page.ids[0] if page.ids else None

    def _choose_walkers(self, client: HttpClient, state: dict[str, Any]) -> int:
        if self.walkers:
            return self.walkers
        walkers = client.settings.concurrency
        rps = client.settings.rps
        if rps:
            # more walkers than rate x latency only queue up behind the pacer
            latency = max(0.001, float(state.get("probe_seconds", 0.05)))
            walkers = min(walkers, max(1, math.ceil(rps * latency * 2)))
        return max(1, walkers)

    async def _walk_range(
        self, client: HttpClient, emit: Emit, key: str, piece: dict[str, Any], coverage: Coverage
    ) -> None:
        stop_at = piece["stop_at"]
        walker = KeysetWalker(
            self.page_size,
            start_after=piece["start_after"],
            stop_at=piece["stop_at"],
            cursor=piece["cursor"],
        )
        while not walker.done:
            params = walker.next_params()
            page = await client.request("GET", self.path, params={**self.params, **params}, decode=self.decode)
            before = walker.cursor
            keep = walker.update(page.ids, int(params["limit"]), page.meta_limit)
            objects, ids = page.objects[keep.start : keep.stop], page.ids[keep.start : keep.stop]
            # ids up to the cursor are covered; a finished range is covered up to its end
            coverage.done += (stop_at if walker.done else min(walker.cursor, stop_at)) - before
            progress = {"ranges": {key: {**piece, "cursor": walker.cursor, "done": walker.done}}}
            await emit(Page(self.stream, objects=objects, ids=ids, progress=progress))


@dataclass
class KeysetHead:
    """The first ``count`` records of a keyset collection, in ascending id order (``exporter pull
    --limit``): one walk from the start, no range probes, pages no larger than what is still
    missing, and no request once ``count`` records are in hand."""

    stream: str
    path: str
    decode: KeysetDecoder
    count: int
    page_size: int = 1000
    params: dict[str, str] = field(default_factory=dict)

    async def run(
        self, client: HttpClient, emit: Emit, state: dict[str, Any], coverage: Coverage | None = None
    ) -> None:
        taken = int(state.get("taken", 0))
        coverage = coverage or Coverage()
        # at most ``count`` records: the end may come sooner (a collection with fewer)
        coverage.unit, coverage.total, coverage.done, coverage.planned = "records", float(self.count), taken, True
        walker = KeysetWalker(max(1, min(self.page_size, self.count)), cursor=state.get("cursor"))
        while not walker.done and taken < self.count:
            # the last page asks for just what is missing: a short answer then means the end
            walker.page_size = min(walker.page_size, self.count - taken)
            params = walker.next_params()
            page = await client.request("GET", self.path, params={**self.params, **params}, decode=self.decode)
            keep = walker.update(page.ids, int(params["limit"]), page.meta_limit)
            stop = min(keep.stop, keep.start + self.count - taken)
            taken += stop - keep.start
            coverage.done = taken if not walker.done else self.count
            progress = {"cursor": walker.cursor, "taken": taken}
            await emit(Page(self.stream, objects=page.objects[keep.start : stop], ids=page.ids[keep.start : stop],
                            progress=progress))


@dataclass
class IdBatches:
    """Fetch known ids again, ``batch`` at a time (``/trades?ids=1,2,3``): the trades that were open
    at the previous incremental run, so that their closes are seen although their id is old."""

    stream: str
    path: str
    decode: KeysetDecoder
    batch: int = 100
    param: str = "ids"

    async def run(
        self, client: HttpClient, emit: Emit, state: dict[str, Any], coverage: Coverage | None = None
    ) -> None:
        coverage = coverage if coverage is not None else Coverage()
        ids = [int(i) for i in state.get("ids", [])]
        done = int(state.get("done_batches", 0))
        batches = [ids[i : i + self.batch] for i in range(0, len(ids), self.batch)]
        coverage.unit, coverage.total = "ids", len(ids)
        coverage.done = sum(len(b) for b in batches[:done])
        coverage.planned = True
        for number, chunk in enumerate(batches[done:], start=done + 1):
            wanted, arrived = set(chunk), set()
            walker = KeysetWalker(self.batch)
            finished = False
            while not finished:
                params = {self.param: ",".join(map(str, chunk)), **walker.next_params()}
                page = await client.request("GET", self.path, params=params, decode=self.decode)
                keep = walker.update(page.ids, int(params["limit"]), page.meta_limit)
                kept = slice(keep.start, keep.stop)
                stray = set(page.ids[kept]) - wanted
                if stray:
                    # a server that ignores the filter would otherwise page through everything
                    raise DataError(
                        f"{self.path}?{self.param}=…: {len(stray)} rows not asked for (e.g. id {min(stray)}); "
                        f"the server ignores the {self.param!r} filter"
                    )
                arrived.update(page.ids[kept])
                # every id asked for has arrived: a full page says nothing more can follow (one
                # request per batch instead of two)
                finished = walker.done or arrived >= wanted
                progress = {"done_batches": number} if finished else {}
                if finished:
                    coverage.done += len(chunk)
                await emit(Page(self.stream, objects=page.objects[kept], ids=page.ids[kept], progress=progress))


@dataclass
class IncrementalCollection:
    """New ids since the previous run (a keyset walk from its highest id) plus a refresh of the
    ids it saw open. ``state`` is seeded by the runner with ``{"new": {"after": id},
    "refresh": {"ids": [...]}}`` from the previous run's cursor."""

    new: KeysetCollection
    refresh: IdBatches

    async def run(
        self, client: HttpClient, emit: Emit, state: dict[str, Any], coverage: Coverage | None = None
    ) -> None:
        new, refresh = Coverage(), Coverage()  # shown as the share of the part least far along
        if coverage is not None:
            coverage.parts = (new, refresh)
        # every page carries the previous cursor's last_id: a projection tells refreshed rows
        # (at or below it) from new ones (above it)
        context = {"after": state.get("new", {}).get("after")}

        def wrapped(part: str) -> Emit:
            async def emit_part(page: Page) -> None:
                page.progress = {part: page.progress} if page.progress else {}
                page.context = context
                await emit(page)

            return emit_part

        async with asyncio.TaskGroup() as group:
            group.create_task(self.new.run(client, wrapped("new"), state.setdefault("new", {}), new))
            group.create_task(self.refresh.run(client, wrapped("refresh"), state.setdefault("refresh", {}), refresh))


@dataclass(frozen=True)
class Target:
    """One limit/offset list to walk: an account's operations, a report's date window, …"""

    key: str
    path: str
    params: dict[str, str] = field(default_factory=dict)


RecordsDecoder = Callable[[Response], list[dict[str, Any]]]


@dataclass
class OffsetLists:
    """Many bare-array lists paged by ``limit``/``offset``, walked concurrently (fan-out).

    ``plan(client)`` names the targets once (stored in the state, so a resumed run walks the same
    set); ``workers`` tasks take targets in turn, each page is emitted as soon as it arrives, and
    each target's offset is checkpointed. A target whose requests keep failing after the client's
    retries is recorded under ``failed`` (never silently dropped) and the others go on; a resumed
    run tries it again.
    """

    stream: str
    plan: Callable[[HttpClient], Awaitable[list[Target]]]
    decode: RecordsDecoder
    id_of: Callable[[dict[str, Any]], Any]
    page_size: int = 1000
    workers: int = 0  # 0: the client's concurrency
    give_up_after: int = 5  # failed targets with no success at all before the walk gives up
    # a pull's --limit: targets one at a time in plan order, stopping once this many records came
    head: int | None = None
    # slow targets (windowed reports): their own read timeout and attempts per request, and how
    # to halve a target whose first page keeps timing out or failing with 5xx ([] = cannot)
    read_timeout: float | None = None
    attempts: int | None = None
    split: Callable[[Target], list[Target]] | None = None
    # lists paged by an exclusive ``last_id`` cursor instead (Tradesync's per-account dailies):
    # raw objects kept exact, each target's cursor checkpointed in place of its offset
    keyset: KeysetDecoder | None = None

    async def run(
        self, client: HttpClient, emit: Emit, state: dict[str, Any], coverage: Coverage | None = None
    ) -> None:
        coverage = coverage if coverage is not None else Coverage()
        if "targets" not in state:
            targets = await self.plan(client)  # a fan-out's parent walk: no total until it is done
            state["targets"] = [[t.key, t.path, t.params] for t in targets]
            state["progress"] = {}
            state["failed"] = {}
        progress: dict[str, Any] = state["progress"]
        leaves = split_leaves(state)
        todo = [t for t in leaves if not progress.get(t.key, {}).get("done")]
        # lists done against lists planned; a single list (no count from the API) has no total
        many = len(leaves) > 1
        coverage.unit = "lists"
        coverage.done = sum(1 for t in leaves if progress.get(t.key, {}).get("done")) if many else 0
        coverage.total = len(leaves) if many else None
        coverage.planned = True
        workers = min(len(todo), 1 if self.head is not None else self.workers or client.settings.concurrency)
        next_index = 0
        tally = {"ok": 0, "failed": 0, "rows": 0}

        async def worker() -> None:
            nonlocal next_index
            while next_index < len(todo) and (self.head is None or tally["rows"] < self.head):
                target = todo[next_index]
                next_index += 1
                start = int(progress.get(target.key, {}).get("offset", 0))
                pages = [0]
                try:
                    if self.keyset is not None:
                        await self._walk_keyset(client, emit, target, progress.get(target.key, {}).get("cursor"),
                                                self.keyset, tally, pages)
                    else:
                        await self._walk(client, emit, target, start, tally, pages)
                    tally["ok"] += 1
                except (RetriesExhausted, HTTPError) as exc:
                    if isinstance(exc, RequestRejected) or (isinstance(exc, HTTPError) and exc.status is None):
                        # not about this target: TLS, a bad base URL, or parameters the API refuses
                        # (the same for every target)
                        raise
                    halves = self._halves(target, exc, start + pages[0])
                    if halves:
                        # checkpointed before the halves are walked: a resumed run walks them too
                        split = {"split": {target.key: [[t.key, t.path, t.params] for t in halves]},
                                 "progress": {target.key: {"done": True, "split": True}},
                                 "failed": {target.key: None}}
                        await emit(Page(self.stream, records=[], progress=split))
                        todo.extend(halves)
                        if coverage.total is not None:
                            coverage.total += len(halves) - 1
                        continue
                    tally["failed"] += 1
                    if tally["failed"] >= self.give_up_after and not tally["ok"]:
                        raise  # nothing works at all: stop instead of failing every target slowly
                    await emit(Page(self.stream, records=[], progress={"failed": {target.key: str(exc)}}))
                if many:  # failed or not, this run is done with it (a rerun tries a failed one again)
                    coverage.done += 1

        if workers:
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(worker())

    def _halves(self, target: Target, exc: Exception, offset: int) -> list[Target]:
        """The halves of a target whose first page failed with a timeout, a dropped connection or
        5xx (a 429 says nothing about its size). A target part-way done is not split: its rows so
        far are written, and the halves would repeat them; a rerun resumes it at its offset."""
        if self.split is None or offset:
            return []
        cause = exc.__cause__ if isinstance(exc, RetriesExhausted) else exc
        status = cause.status if isinstance(cause, HTTPError) else None
        if status is not None and status < 500:
            return []
        return self.split(target)

    async def _walk(self, client: HttpClient, emit: Emit, target: Target, offset: int, tally: dict[str, int],
                    pages: list[int]) -> None:
        size = self.page_size if self.head is None else max(1, min(self.page_size, self.head))
        walker = OffsetWalker(size, offset=offset)
        while not walker.done:
            params = {**target.params, **walker.next_params()}
            records = await client.request("GET", target.path, params=params, decode=self.decode,
                                           read_timeout=self.read_timeout, max_attempts=self.attempts)
            keep = walker.update([self.id_of(r) for r in records])
            kept = records if len(keep) == len(records) else [records[i] for i in keep]
            if self.head is not None:
                kept = kept[: self.head - tally["rows"]]
            tally["rows"] += len(kept)
            pages[0] = walker.offset - offset
            done = {"offset": walker.offset, "done": walker.done}
            update: dict[str, Any] = {"progress": {target.key: done}}
            if walker.done:
                update["failed"] = {target.key: None}
            await emit(Page(self.stream, records=kept, progress=update))
            if self.head is not None and tally["rows"] >= self.head:
                return

    async def _walk_keyset(self, client: HttpClient, emit: Emit, target: Target, cursor: int | None,
                           decode: KeysetDecoder, tally: dict[str, int], pages: list[int]) -> None:
        walker = KeysetWalker(self.page_size, cursor=cursor)
        while not walker.done:
            params = {**target.params, **walker.next_params()}
            page = await client.request("GET", target.path, params=params, decode=decode,
                                        read_timeout=self.read_timeout, max_attempts=self.attempts)
            keep = walker.update(page.ids, int(params["limit"]), page.meta_limit)
            objects, ids = page.objects[keep.start : keep.stop], page.ids[keep.start : keep.stop]
            tally["rows"] += len(objects)
            pages[0] += 1
            update: dict[str, Any] = {"progress": {target.key: {"cursor": walker.cursor, "done": walker.done}}}
            if walker.done:
                update["failed"] = {target.key: None}
            await emit(Page(self.stream, objects=objects, ids=ids, progress=update))


def split_leaves(state: dict[str, Any]) -> list[Target]:
    """The targets still to walk or walked: planned ones, each split one replaced by its halves
    (recursively), in plan order."""
    splits: dict[str, list[list[Any]]] = state.get("split", {})

    def expand(key: str, path: str, params: dict[str, str]) -> list[Target]:
        if key in splits:
            return [t for k, p, q in splits[key] for t in expand(k, p, dict(q))]
        return [Target(key, path, dict(params))]

    return [t for k, p, q in state.get("targets", []) for t in expand(k, p, dict(q))]


def failed_targets(state: dict[str, Any]) -> dict[str, str]:
    """Targets of an :class:`OffsetLists` walk that failed and were not retried successfully."""
    return {k: v for k, v in state.get("failed", {}).items() if v}
