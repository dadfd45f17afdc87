"""The run: wires job spec -> sources -> HTTP clients -> converters -> writers -> publish.

Each stream runs as a producer (its walk, fetching pages under the source's limits) and a
consumer (conversion and writing in a worker thread, so fetching and writing overlap), joined by a
bounded queue: memory holds at most ``queue_pages`` pages per stream plus one row group per dataset.
After every ``checkpoint_rows`` rows the consumer makes its part files durable and saves the
checkpoint; a failed or interrupted run leaves the published snapshot untouched and can resume.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from . import __version__
from .checkpoint import FILE_NAME, Checkpoint, merge_progress
from .drift import Decision, DriftRules, settle_files
from .errors import CheckpointError, ExporterError, IncompleteRun, Interrupted
from .fsutil import fsync_dir, remove_tree, write_json_atomic
from .http import HttpClient
from .jobs import JobSpec
from .progress import Reporter
from .schema import Converted, PageConverter, empty_table, encode_json
from .sink import DatasetWriter, PartFile, WriterSettings, discard_unfinished, publish_partition
from .sources import Connection, Source, Stream, registry
from .walk import Page, combine, failed_targets

log = logging.getLogger("exporter.run")

STAGING = "_staging"


@dataclass
class RunOptions:
    output: Path
    resume: str = "auto"  # auto: resume a matching checkpoint; require: fail without one; fresh: discard
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    reporter: Reporter | None = None
    queue_pages: int = 8
    convert_threads: int = 2  # pages converted at once (Arrow's JSON reader releases the GIL)
    convert_ahead: int = 3  # pages converting while the oldest one is written
    batch_rows: int = 1000  # small pages waiting in the queue are combined up to this many rows
    checkpoint_rows: int | None = None  # default: the job's rows_per_file
    row_group_rows: int = 32_000
    now: datetime | None = None


@dataclass
class DatasetResult:
    source: str
    dataset: str
    rows: int
    files: list[PartFile]
    path: Path
    schema: pa.Schema
    unknown_fields: dict[str, int]
    withheld_fields: list[str]
    rejects: dict[str, int]
    rejected_rows: int
    null_tokens: dict[str, int]
    drift: Decision = field(default_factory=Decision)

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.files)


@dataclass
class RunResult:
    run_id: str
    job: str
    snapshot_date: str
    started_at: str
    finished_at: str
    seconds: float
    datasets: list[DatasetResult]
    requests: dict[str, dict[str, Any]]
    resumed: int


def source_client(source: Source, connection: Connection) -> HttpClient:
    """The HTTP client of one source: its settings, auth, error reader and hooks."""
    return HttpClient(
        source.client_settings(connection),
        auth=source.auth(connection),
        read_error=source.read_error,
        auth_hint=source.auth_hint,
        on_response=source.on_response,
    )


class _DatasetSink:
    """Writer, rejects file and manifest counters of one dataset in the staging area."""

    drift_rules = DriftRules()  # how its stream's drift values read (report cells are text)

    def __init__(self, key: str, directory: Path, state: dict[str, Any], settings: WriterSettings, schema):
        self.key = key
        self.directory = directory
        self.state = state
        parts = [PartFile(**p) for p in state.setdefault("parts", [])]
        self._prune(directory, parts, state.get("rejects_bytes", 0))
        self.writer = DatasetWriter(directory, schema, settings, parts=parts)
        self._declared = frozenset(schema.names)
        self.unknown = Counter(state.get("unknown_fields", {}))
        self.withheld = set(state.get("withheld_fields", []))
        self.rejects = Counter(state.get("rejects", {}))
        self.rejected_rows = int(state.get("rejected_rows", 0))
        self.null_tokens = Counter(state.get("null_tokens", {}))
        self._rejects_path = directory / "_rejects.jsonl"
        self._rejects_file = None

    @staticmethod
    def _prune(directory: Path, parts: list[PartFile], rejects_bytes: int) -> None:
        """Drop what a crash left behind after the last checkpoint: those rows get fetched again."""
        discard_unfinished(directory)
        keep = {p.name for p in parts}
        if directory.is_dir():
            for path in directory.glob("part-*.parquet"):
                if path.name not in keep:
                    path.unlink()
            rejects = directory / "_rejects.jsonl"
            if rejects.exists():
                with open(rejects, "rb+") as handle:
                    handle.truncate(rejects_bytes)

    def add(self, table: pa.Table, converted: Converted, page: Page) -> None:
        self.writer.write(table)
        # columns this dataset gained from fields the schema does not know, under the name it
        # writes them (a projection may rename them, or not carry them at all: balances of
        # Tradesync), with the rows that hold a value
        for name in table.column_names:
            if name not in self._declared:
                self.unknown[name] += len(table) - table.column(name).null_count
        self.withheld.update(converted.withheld_fields)
        self.null_tokens.update(converted.null_tokens)
        columns = set(table.column_names)
        for reject in converted.rejects:
            # a projection without the failed column (balances for open_trades) lost nothing
            if not columns & set(reject.problems):
                continue
            if self._rejects_file is None:
                self._rejects_file = open(self._rejects_path, "ab")  # noqa: SIM115 - kept open across pages
            self.rejects.update(reject.problems.keys())
            self.rejected_rows += 1
            line = {"fetched_at": page.fetched_at.isoformat(), "problems": reject.problems, "record": reject.record}
            self._rejects_file.write(encode_json(line) + b"\n")  # numbers exactly as served

    def make_durable(self) -> dict[str, Any]:
        """Close the open part file and fsync the rejects; return the state that is now true.

        Runs in a writer thread; the caller applies the returned state to the checkpoint and saves
        it together with the walk's progress, in one step, so the two never disagree on disk.
        """
        self.writer.checkpoint()
        rejects_bytes = 0
        if self._rejects_file is not None:
            self._rejects_file.flush()
            os.fsync(self._rejects_file.fileno())
        if self._rejects_path.exists():
            rejects_bytes = self._rejects_path.stat().st_size
        return dict(
            parts=[vars(p) for p in self.writer.parts],
            rejects_bytes=rejects_bytes,
            unknown_fields=dict(self.unknown),
            withheld_fields=sorted(self.withheld),
            rejects=dict(self.rejects),
            rejected_rows=self.rejected_rows,
            null_tokens=dict(self.null_tokens),
        )

    def finish(self) -> dict[str, Any]:
        """The last part file (an empty one for an empty dataset, so readers see its schema)."""
        self.writer.close(keep_empty=True)
        state = self.make_durable()
        if self._rejects_file is not None:
            self._rejects_file.close()
            self._rejects_file = None
        return state

    def settle_drift(self) -> Decision:
        """Once the dataset is complete: its drift columns in their final form (drift.py), in the
        staged files, whose sizes and schema change accordingly."""
        paths = [self.directory / p.name for p in self.writer.parts]
        decision = settle_files(paths, self._declared, self.drift_rules, compression=self.writer.settings.compression)
        self.writer.parts = [PartFile(p.name, p.rows, path.stat().st_size) for p, path in zip(
            self.writer.parts, paths, strict=True)]
        # the schema of all the files: a resumed writer only knows the columns it met after resuming
        self.writer.schema = pa.schema(list(pa.unify_schemas([pq.read_schema(path) for path in paths])))
        self.null_tokens.update(decision.null_tokens)
        return decision

    def abort(self) -> None:
        self.writer.abort()
        if self._rejects_file is not None:
            self._rejects_file.close()
            self._rejects_file = None


class Run:
    """One execution of a job. ``request_stop()`` (SIGINT/SIGTERM) ends it cleanly with a checkpoint."""

    def __init__(self, job: JobSpec, options: RunOptions) -> None:
        self.job = job
        self.options = options
        self.output = options.output
        self.reporter = options.reporter or Reporter(enabled=False)
        self.sources: list[Source] = [registry()[s.kind](s) for s in job.sources]
        self._producers: list[asyncio.Task] = []
        self._stopping = False
        self.checkpoint: Checkpoint | None = None
        # dataset key -> (folder, cursor key of an incremental stream, stream key)
        self._layout: dict[str, tuple[str, str | None, str]] = {}
        self._convert_pool = ThreadPoolExecutor(max(1, options.convert_threads), thread_name_prefix="convert")
        # each stream awaits its previous write before the next, so a stream's writers are only
        # ever used by one thread at a time; several streams write in parallel
        self._writer_pool = ThreadPoolExecutor(4, thread_name_prefix="write")

    @property
    def staging_root(self) -> Path:
        return self.output / STAGING / self.job.name

    def request_stop(self) -> None:
        if not self._stopping:
            log.warning("stopping: finishing the pages in hand and saving a checkpoint")
        self._stopping = True
        for task in self._producers:
            task.cancel()

    def _open_checkpoint(self) -> Checkpoint:
        path = self.staging_root / FILE_NAME
        fingerprint = self.job.fingerprint()
        mode = self.options.resume
        if mode == "fresh" and self.staging_root.exists():
            remove_tree(self.staging_root)
        if path.exists():
            checkpoint = Checkpoint.load(path, job=self.job.name, fingerprint=fingerprint)
            checkpoint.save()  # count this attempt even if it fails before its first checkpoint
            log.info("resuming run %s from its checkpoint (%s)", checkpoint.run_id, path)
            return checkpoint
        if mode == "require":
            raise CheckpointError(f"--resume: no checkpoint for job {self.job.name!r} under {self.staging_root}")
        if self.staging_root.exists():
            remove_tree(self.staging_root)  # leftovers without a checkpoint hold nothing resumable
        now = self.options.now or datetime.now(UTC)
        checkpoint = Checkpoint(
            path=path,
            job=self.job.name,
            fingerprint=fingerprint,
            # sorts by start time (to the microsecond): "latest run wins" queries order by it
            run_id=now.strftime("%Y%m%dT%H%M%S%fZ-") + uuid.uuid4().hex[:6],
            snapshot_date=now.date().isoformat(),
            started_at=now.isoformat(),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.save()
        return checkpoint

    def _save(self) -> None:
        """Only ever called from the event loop thread, which owns the checkpoint's contents."""
        assert self.checkpoint is not None
        self.checkpoint.save()

    def _partition(self, root: Path, source: str, dataset: str) -> Path:
        """``<source>/<dataset>/snapshot_date=D``; incremental tables add ``run_id=R`` (a new
        partition per run, never a replacement)."""
        assert self.checkpoint is not None
        folder, incremental, _ = self._layout.get(f"{source}/{dataset}", (dataset, None, ""))
        path = root / source / folder / f"snapshot_date={self.checkpoint.snapshot_date}"
        return path / f"run_id={self.checkpoint.run_id}" if incremental else path

    async def execute(self) -> RunResult:
        try:
            return await self._execute()
        finally:
            self._convert_pool.shutdown(wait=True, cancel_futures=True)
            self._writer_pool.shutdown(wait=True)

    async def _execute(self) -> RunResult:
        started = time.monotonic()
        self.checkpoint = self._open_checkpoint()
        staging = self.staging_root / self.checkpoint.run_id
        results: dict[str, dict[str, Any]] = {}
        sinks: dict[str, _DatasetSink] = {}
        try:
            async with asyncio.TaskGroup() as group:
                for source in self.sources:
                    group.create_task(self._run_source(source, staging, sinks, results))
        except BaseExceptionGroup as group_error:
            # cancelled streams may still have a write running in a worker thread: let those
            # finish before the writers are closed under them
            self._writer_pool.shutdown(wait=True, cancel_futures=True)
            for sink in sinks.values():
                sink.abort()
            raise _first_error(group_error) from None
        if self._stopping:
            raise Interrupted(
                f"interrupted; the checkpoint is saved. Resume with: exporter run {self.job.path} --resume"
            )
        finished = datetime.now(UTC)
        datasets = self._publish(staging, sinks, results, finished)
        remove_tree(self.staging_root)
        with contextlib.suppress(OSError):
            self.staging_root.parent.rmdir()  # OUTPUT/_staging, if no other job is staging
        self.reporter.close()
        return RunResult(
            run_id=self.checkpoint.run_id,
            job=self.job.name,
            snapshot_date=self.checkpoint.snapshot_date,
            started_at=self.checkpoint.started_at,
            finished_at=finished.isoformat(),
            seconds=time.monotonic() - started,
            datasets=datasets,
            requests={k: v["requests"] for k, v in results.items()},
            resumed=self.checkpoint.resumed,
        )

    async def _run_source(
        self, source: Source, staging: Path, sinks: dict[str, _DatasetSink], results: dict[str, Any]
    ) -> None:
        with contextlib.ExitStack() as stack:
            if source.spec.sandbox is not None:
                connection: Connection = stack.enter_context(source.sandbox())
            else:
                connection = source.connection(self.options.env)
            client = source_client(source, connection)
            async with client:
                streams = source.streams()
                async with asyncio.TaskGroup() as group:
                    for stream in streams:
                        group.create_task(self._run_stream(source, stream, client, staging, sinks))
            results[source.kind] = {
                "requests": client.stats.as_dict() | {"peak_in_flight": client.peak_in_flight},
                "base_url": _public_url(client.settings.base_url),
            }

    async def _run_stream(
        self,
        source: Source,
        stream: Stream,
        client: HttpClient,
        staging: Path,
        sinks: dict[str, _DatasetSink],
    ) -> None:
        assert self.checkpoint is not None
        stream_key = f"{source.kind}/{stream.name}"
        stream_state = self.checkpoint.streams.setdefault(stream_key, {"walk": {}, "done": False})
        converter = PageConverter(stream.schema, schema_drift=self.job.schema_drift, null_tokens=stream.null_tokens)
        settings = WriterSettings(
            rows_per_file=self.job.rows_per_file,
            row_group_rows=min(self.options.row_group_rows, self.job.rows_per_file),
        )
        own: list[_DatasetSink] = []
        for dataset in stream.outputs:
            key = f"{source.kind}/{dataset}"
            self._layout[key] = (stream.folder(dataset), stream.incremental, stream_key)
            state = self.checkpoint.datasets.setdefault(key, {})
            directory = self._partition(staging, source.kind, dataset)
            base = stream.outputs[dataset](empty_table(stream.schema.arrow_schema()), Page(stream.name)).schema
            sinks[key] = _DatasetSink(key, directory, state, settings, base)
            sinks[key].drift_rules = DriftRules(stream.text_cells, stream.null_tokens)
            own.append(sinks[key])
        self.reporter.add_stream(stream_key)
        if stream_state["done"]:
            return
        if stream.incremental and "seeded" not in stream_state:
            previous = find_cursor(self.output / source.kind / stream.folder(next(iter(stream.outputs))),
                                   stream.incremental)
            if previous is not None:
                stream_state["walk"] = {"new": {"after": previous["last_id"]},
                                        "refresh": {"ids": previous["open_ids"]}}
                log.info("%s: incremental from id %s, refreshing %d open trades", stream_key,
                         previous["last_id"], len(previous["open_ids"]))
            stream_state["seeded"] = True
        queue: asyncio.Queue[Page] = asyncio.Queue(maxsize=self.options.queue_pages)
        producer = asyncio.create_task(stream.walk.run(client, queue.put, stream_state["walk"]))
        self._producers.append(producer)
        pending: list[dict[str, Any]] = []
        since_checkpoint = 0
        every = self.options.checkpoint_rows or self.job.rows_per_file

        def convert(page: Page) -> Converted:
            if page.objects is not None:
                converted = converter.from_json_objects(page.objects)
                if page.ids is not None:
                    converter.check_ids(converted.table, page.ids)
                return converted
            return converter.from_records(page.records or [])

        def write(page: Page, converted: Converted) -> None:
            for sink, project in zip(own, stream.outputs.values(), strict=True):
                sink.add(project(converted.table, page), converted, page)

        async def durable(step: Callable[[_DatasetSink], dict[str, Any]]) -> None:
            """Part files closed (in a writer thread), then their list and the walk progress they
            cover go into the checkpoint together, saved from the event loop: no other stream can
            save one without the other in between."""
            nonlocal since_checkpoint
            states = await loop.run_in_executor(self._writer_pool, lambda: [step(sink) for sink in own])
            for sink, state in zip(own, states, strict=True):
                sink.state.update(state)
            for progress in pending:
                merge_progress(stream_state["walk"], progress)
            pending.clear()
            since_checkpoint = 0
            self._save()

        # pages are converted by the run's worker threads (Arrow releases the GIL, so two pages
        # convert on two cores) and written one at a time, in the order they arrived
        converting: collections.deque[tuple[Page, asyncio.Future[Converted]]] = collections.deque()
        loop = asyncio.get_running_loop()

        async def write_oldest() -> None:
            nonlocal since_checkpoint
            page, future = converting.popleft()
            converted = await future
            await loop.run_in_executor(self._writer_pool, write, page, converted)
            pending.append(page.progress)
            since_checkpoint += page.size
            self.reporter.advance(stream_key, page.size)
            if since_checkpoint >= every:
                await durable(_DatasetSink.make_durable)

        try:
            while True:
                if producer.done() and queue.empty():
                    break
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, producer}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    continue
                batch = [getter.result()]
                # take what else is waiting, up to a page's worth of rows: small fan-out pages
                # would otherwise cost a conversion and a write each
                while not queue.empty() and sum(p.size for p in batch) < self.options.batch_rows:
                    batch.append(queue.get_nowait())
                for group in _same_kind_runs(batch):
                    page = combine(group)
                    converting.append((page, loop.run_in_executor(self._convert_pool, convert, page)))
                while len(converting) >= self.options.convert_ahead:
                    await write_oldest()
            while converting:
                await write_oldest()
            await durable(_DatasetSink.make_durable)
            if producer.cancelled():
                return
            producer.result()  # re-raise a walk failure
            failed = failed_targets(stream_state["walk"])
            if failed:
                sample = "; ".join(f"{k}: {v}" for k, v in list(failed.items())[:3])
                raise IncompleteRun(
                    f"{stream_key}: {len(failed)} of {len(stream_state['walk'].get('targets', []))} requests "
                    f"groups still failed after retries (e.g. {sample}). Nothing was published; rerun to "
                    "fetch only those (finished ones are checkpointed)"
                )
            await durable(_DatasetSink.finish)
            stream_state["done"] = True
            self._save()
        except BaseException:
            producer.cancel()
            with contextlib.suppress(BaseException):
                await producer
            for _, future in converting:
                future.cancel()
            raise

    def _publish(
        self,
        staging: Path,
        sinks: dict[str, _DatasetSink],
        results: dict[str, dict[str, Any]],
        finished: datetime,
    ) -> list[DatasetResult]:
        assert self.checkpoint is not None
        out: list[DatasetResult] = []
        by_source: dict[str, list[tuple[str, _DatasetSink]]] = {}
        for key, sink in sinks.items():
            source, dataset = key.split("/", 1)
            by_source.setdefault(source, []).append((dataset, sink))
        for source, items in by_source.items():
            for dataset, sink in items:
                drift = sink.settle_drift()
                out.append(
                    DatasetResult(
                        source=source,
                        dataset=dataset,
                        rows=sum(p.rows for p in sink.writer.parts),
                        files=list(sink.writer.parts),
                        path=self._partition(self.output, source, dataset),
                        schema=sink.writer.schema,
                        unknown_fields=dict(sink.unknown),
                        withheld_fields=sorted(sink.withheld),
                        rejects=dict(sink.rejects),
                        rejected_rows=sink.rejected_rows,
                        null_tokens=dict(sink.null_tokens),
                        drift=drift,
                    )
                )
            manifest = build_manifest(self, source, [r for r in out if r.source == source], results, finished)
            for dataset, _sink in items:
                staged = self._partition(staging, source, dataset)
                folder, incremental, stream_key = self._layout[f"{source}/{dataset}"]
                if incremental:
                    walk = self.checkpoint.streams.get(stream_key, {}).get("walk", {})
                    cursor = next_cursor(staged, incremental, self.output / source / folder, walk)
                    write_json_atomic(staged / CURSOR_FILE, cursor | {"run_id": self.checkpoint.run_id})
                    manifest = manifest | {"incremental": {dataset: cursor | {"open_ids": len(cursor["open_ids"])}}}
                write_json_atomic(staged / "_manifest.json", manifest)
        # every dataset of every source succeeded: only now does anything become visible
        for result in out:
            publish_partition(self._partition(staging, result.source, result.dataset), result.path)
        fsync_dir(self.output)
        return out


def _same_kind_runs(pages: list[Page]) -> list[list[Page]]:
    """Consecutive pages that carry the same kind of payload (raw objects or records)."""
    runs: list[list[Page]] = []
    for page in pages:
        if runs and (runs[-1][0].objects is None) == (page.objects is None):
            runs[-1].append(page)
        else:
            runs.append([page])
    return runs


CURSOR_FILE = "_cursor.json"


def find_cursor(folder: Path, key: str) -> dict[str, Any] | None:
    """The newest published cursor of an incremental table (``run_id`` sorts by time)."""
    best: dict[str, Any] | None = None
    for path in folder.glob(f"snapshot_date=*/run_id=*/{CURSOR_FILE}"):
        try:
            cursor = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if cursor.get("key") == key and (best is None or cursor.get("run_id", "") > best.get("run_id", "")):
            best = cursor
    return best


def next_cursor(staged: Path, key: str, folder: Path, walk: dict[str, Any]) -> dict[str, Any]:
    """After this run: the highest id covered, and the ids still open (to refresh next time)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    previous = find_cursor(folder, key)
    candidates = [previous["last_id"]] if previous and previous.get("last_id") is not None else []
    if walk.get("new", {}).get("highest") is not None:
        candidates.append(int(walk["new"]["highest"]))  # the snapshot bound probed at the start
    open_ids: set[int] = set()
    for part in sorted(staged.glob("part-*.parquet")):
        table = pq.read_table(part, columns=["id", "state"])
        if table.num_rows:
            candidates.append(pc.max(table.column("id")).as_py())
            still_open = table.filter(pc.equal(table.column("state"), "open")).column("id")
            open_ids.update(still_open.to_pylist())
    last_id = max((c for c in candidates if c is not None), default=None)
    return {"key": key, "last_id": last_id, "open_ids": sorted(open_ids)}


def build_manifest(
    run: Run, source: str, datasets: list[DatasetResult], results: dict[str, Any], finished: datetime
) -> dict[str, Any]:
    assert run.checkpoint is not None
    return {
        "run_id": run.checkpoint.run_id,
        "job": run.job.name,
        "job_file": str(run.job.path),
        "job_fingerprint": run.job.fingerprint(),
        "source": source,
        "base_url": results.get(source, {}).get("base_url"),
        "snapshot_date": run.checkpoint.snapshot_date,
        "started_at": run.checkpoint.started_at,
        "finished_at": finished.isoformat(),
        "exporter_version": __version__,
        "resumed": run.checkpoint.resumed,
        "schema_drift": run.job.schema_drift,
        "datasets": {
            d.dataset: {
                "rows": d.rows,
                "bytes": d.bytes,
                "files": [vars(p) for p in d.files],
                "schema": [{"name": f.name, "type": str(f.type)} for f in d.schema],
                "unknown_fields": d.unknown_fields,
                "drift_types": d.drift.types,
                "drift_fallbacks": d.drift.fallbacks,
                "withheld_fields": d.withheld_fields,
                "rejected_rows": d.rejected_rows,
                "rejects_by_column": d.rejects,
                "null_tokens": d.null_tokens,
            }
            for d in datasets
        },
        "requests": results.get(source, {}).get("requests", {}),
    }


def _public_url(url: str) -> str:
    """A base URL without any user:password@ part."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest.split("/", 1)[0]:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The most telling error of a task group: auth first, then any exporter error."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for kind in (Interrupted, ExporterError, OSError, Exception, BaseException):
        for exc in leaves:
            if isinstance(exc, kind) and not isinstance(exc, asyncio.CancelledError):
                return exc
    return leaves[0] if leaves else group


async def run_job(job: JobSpec, options: RunOptions) -> RunResult:
    return await Run(job, options).execute()
