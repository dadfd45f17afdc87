"""The run: wires job spec -> sources -> HTTP clients -> stream pipelines -> sinks -> commit.

Orchestration only: the lease (one run per job and output), the checkpoint (resume), one
:class:`~exporter.pipeline.StreamPipeline` per stream, and, once every dataset of every source
succeeded, one commit through :mod:`exporter.commit`. A failed or interrupted run publishes
nothing and can resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .checkpoint import Checkpoint
from .commit import CURSOR, Committer, PartitionPlan
from .drift import DriftRules
from .errors import CheckpointError, ExporterError, Interrupted, name_source
from .http import HttpClient
from .incremental import pick_latest
from .jobs import JobSpec
from .lease import RunLease
from .manifest import DatasetResult, RunInfo, build_manifest
from .pipeline import PipelineSettings, StreamPipeline
from .progress import Reporter
from .schema import PageConverter, empty_table
from .sink import DatasetSink, WriterSettings
from .sources import Connection, Source, Stream, registry, written_names
from .storage import Storage, join, open_storage
from .tables import open_tables, table_spec
from .walk import Page

log = logging.getLogger("exporter.run")


@dataclass
class RunOptions:
    output: Path | str
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
    resume_hint: str = ""  # the command that resumes this run (the CLI fills it in)


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
    recovered: bool = False  # the commit of an interrupted run was completed, nothing fetched


def source_client(source: Source, connection: Connection) -> HttpClient:
    """The HTTP client of one source: its settings, auth, error reader and hooks."""
    return HttpClient(
        source.client_settings(connection),
        auth=source.auth(connection),
        read_error=source.read_error,
        auth_hint=source.auth_hint,
        on_response=source.on_response,
    )


def output_storage(job: JobSpec, output: Path | str, env: Mapping[str, str]) -> Storage:
    return open_storage(str(output), env=env, endpoint_url=job.s3_endpoint_url, region=job.s3_region)


class Run:
    """One execution of a job. ``request_stop()`` (SIGINT/SIGTERM) ends it cleanly with a checkpoint."""

    def __init__(self, job: JobSpec, options: RunOptions, storage: Storage | None = None) -> None:
        self.job = job
        self.options = options
        self.storage = storage or output_storage(job, options.output, options.env)
        # Delta or Iceberg output: the commit registers the staged files in one table per dataset
        self.tables = open_tables(self.storage, job, options.env, job.format)
        self.committer = Committer(self.storage, job.name, self.tables)
        self.lease = RunLease(self.storage, job.name, ttl=job.lease_ttl_seconds)
        self.reporter = options.reporter or Reporter(enabled=False)
        self.sources: list[Source] = [registry()[s.kind](s) for s in job.sources]
        self._producers: list[asyncio.Task] = []
        self._stopping = False
        self.checkpoint: Checkpoint | None = None
        self.sinks: dict[str, DatasetSink] = {}
        self._targets: dict[str, str] = {}  # dataset key -> published partition
        self._streams: dict[str, tuple[Stream, str]] = {}  # dataset key -> (stream, stream key)
        self._clients: dict[str, HttpClient] = {}  # source -> its client: counters even of a failed run
        self._convert_pool = ThreadPoolExecutor(max(1, options.convert_threads), thread_name_prefix="convert")
        # each stream awaits its previous write before the next, so a stream's writers are only
        # ever used by one thread at a time; several streams write in parallel
        self._writer_pool = ThreadPoolExecutor(4, thread_name_prefix="write")

    def request_stats(self) -> dict[str, dict[str, Any]]:
        """Request counters per source so far (the metrics of a run that failed)."""
        return {k: c.stats.as_dict() | {"peak_in_flight": c.peak_in_flight} for k, c in self._clients.items()}

    def request_stop(self) -> None:
        if not self._stopping:
            log.warning("stopping: finishing the pages in hand and saving a checkpoint")
        self._stopping = True
        for task in self._producers:
            task.cancel()

    async def execute(self) -> RunResult:
        try:
            return await self._execute()
        finally:
            self._convert_pool.shutdown(wait=True, cancel_futures=True)
            self._writer_pool.shutdown(wait=True)
            self.lease.release()

    # ---- set-up

    def _claim_output(self) -> RunResult | None:
        """Reach the storage, take the lease, and finish an interrupted commit if there is one."""
        self.storage.reach()
        if self.tables is not None:
            self.tables.check()  # an unreachable catalog fails now, not after the whole fetch
        self.lease.acquire()
        started = time.monotonic()
        journal = self.committer.recover()
        if journal is None or self.options.resume == "fresh":
            return None
        summary = journal["summary"]
        reached = self.tables.reached if self.tables is not None else {}
        for entry in summary["datasets"]:
            entry["table"] = reached.get(f"{entry['source']}/{entry['dataset']}", entry.get("table"))
        return RunResult(
            run_id=journal["run_id"], job=self.job.name, snapshot_date=summary["snapshot_date"],
            started_at=summary["started_at"], finished_at=summary["finished_at"],
            seconds=time.monotonic() - started,
            datasets=[DatasetResult(**d) for d in summary["datasets"]],
            requests=summary["requests"], resumed=summary["resumed"], recovered=True,
        )

    def _check_credentials(self) -> None:
        """Missing credentials fail here, before anything is left behind."""
        for source in self.sources:
            if source.spec.sandbox is None:
                source.connection(self.options.env)

    def _open_checkpoint(self) -> Checkpoint:
        key = self.committer.checkpoint_key
        fingerprint = self.job.fingerprint()
        mode = self.options.resume
        if mode == "fresh":
            raw = self.storage.read(key)
            try:
                previous = json.loads(raw) if raw else None
            except ValueError:
                previous = None
            self.committer.discard(previous)
        checkpoint = Checkpoint.load(self.storage, key, job=self.job.name, fingerprint=fingerprint)
        if checkpoint is not None:
            checkpoint.save()  # count this attempt even if it fails before its first checkpoint
            log.info("resuming run %s from its checkpoint (%s)", checkpoint.run_id, self.storage.describe(key))
            return checkpoint
        if mode == "require":
            raise CheckpointError(
                f"--resume: no checkpoint for job {self.job.name!r} under {self.storage.describe(self.committer.root)}"
            )
        self.committer.discard(None)  # leftovers without a checkpoint hold nothing resumable
        now = self.options.now or datetime.now(UTC)
        # not saved yet: only once there is something to resume (the first page written)
        return Checkpoint(
            storage=self.storage,
            key=key,
            job=self.job.name,
            fingerprint=fingerprint,
            # sorts by start time (to the microsecond): "latest run wins" queries order by it
            run_id=now.strftime("%Y%m%dT%H%M%S%fZ-") + uuid.uuid4().hex[:6],
            snapshot_date=now.date().isoformat(),
            started_at=now.isoformat(),
        )

    def _save(self) -> None:
        """Only ever called from the event loop thread, which owns the checkpoint's contents."""
        assert self.checkpoint is not None
        self.lease.check()
        self.checkpoint.save()

    def _partition(self, stream: Stream) -> dict[str, str]:
        """The partition a run writes: its date, and for incremental tables the run itself."""
        assert self.checkpoint is not None
        partition = {"snapshot_date": self.checkpoint.snapshot_date}
        return partition | {"run_id": self.checkpoint.run_id} if stream.incremental else partition

    def _target(self, source: str, stream: Stream, dataset: str) -> str:
        """``<source>/<dataset>/snapshot_date=D``; incremental tables add ``run_id=R`` (a new
        partition per run, never a replacement)."""
        assert self.checkpoint is not None
        target = join(source, stream.folder(dataset), f"snapshot_date={self.checkpoint.snapshot_date}")
        return join(target, f"run_id={self.checkpoint.run_id}") if stream.incremental else target

    # ---- the run

    async def _execute(self) -> RunResult:
        started = time.monotonic()
        recovered = self._claim_output()
        if recovered is not None:
            self.reporter.close()
            return recovered
        self._check_credentials()
        self.checkpoint = self._open_checkpoint()
        self.lease.set_run(self.checkpoint.run_id)
        results: dict[str, dict[str, Any]] = {}
        try:
            async with asyncio.TaskGroup() as group:
                for source in self.sources:
                    group.create_task(self._run_source(source, results))
        except BaseExceptionGroup as group_error:
            # cancelled streams may still have a write running in a worker thread: let those
            # finish before the writers are closed under them
            self._writer_pool.shutdown(wait=True, cancel_futures=True)
            for sink in self.sinks.values():
                sink.abort()
            raise _first_error(group_error) from None
        if self._stopping:
            if self.storage.read(self.committer.checkpoint_key) is None:
                raise Interrupted("interrupted before the first page was written: nothing to resume, "
                                  "the next run starts over")
            raise Interrupted(
                "interrupted; the checkpoint is saved. Resume with: "
                + (self.options.resume_hint or f"exporter run {self.job.path} --resume")
            )
        finished = datetime.now(UTC)
        datasets = self._commit(results, finished)
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

    async def _run_source(self, source: Source, results: dict[str, Any]) -> None:
        try:
            await self._fetch_source(source, results)
        except BaseException as error:
            name_source(error, source.name)  # a job of many tenants says which one failed
            raise

    async def _fetch_source(self, source: Source, results: dict[str, Any]) -> None:
        with contextlib.ExitStack() as stack:
            if source.spec.sandbox is not None:
                connection: Connection = stack.enter_context(source.sandbox())
            else:
                connection = source.connection(self.options.env)
            client = self._clients[source.name] = source_client(source, connection)
            client.on_pause = lambda seconds, reason: self.reporter.waiting(source.name, seconds, reason)
            async with client:
                pipelines = [self._pipeline(source, stream) for stream in source.streams()]
                async with asyncio.TaskGroup() as group:
                    for pipeline in pipelines:
                        if pipeline is not None:
                            group.create_task(pipeline.run(client))
            results[source.name] = {
                "kind": source.kind,
                "requests": client.stats.as_dict() | {"peak_in_flight": client.peak_in_flight},
                "base_url": _public_url(client.settings.base_url),
                "settings": source.manifest_extra(),
            }

    def _pipeline(self, source: Source, stream: Stream) -> StreamPipeline | None:
        """The stream's sinks (one per dataset it feeds) and its pipeline; None if it is done."""
        assert self.checkpoint is not None
        stream_key = f"{source.name}/{stream.name}"
        state = self.checkpoint.streams.setdefault(stream_key, {"walk": {}, "done": False})
        settings = WriterSettings(
            rows_per_file=self.job.rows_per_file,
            row_group_rows=min(self.options.row_group_rows, self.job.rows_per_file),
        )
        sinks = []
        run_id = self.checkpoint.run_id
        for dataset in stream.outputs:
            key = f"{source.name}/{dataset}"
            target = self._target(source.name, stream, dataset)
            self._targets[key] = target
            self._streams[key] = (stream, stream_key)
            partition = self.committer.staged_partition(run_id, target)
            dataset_state = self.checkpoint.datasets.setdefault(key, {})
            dataset_state["partition"] = partition
            base = stream.outputs[dataset](empty_table(stream.schema.arrow_schema()), Page(stream.name)).schema
            constants = self.tables.file_columns(self._partition(stream)) if self.tables is not None else None
            self.sinks[key] = DatasetSink(
                key, self.storage, partition, self.committer.rejects_prefix(run_id, key), dataset_state, settings,
                base, tag=self.committer.part_tag(run_id), spool=self.committer.spool_partition(run_id, target),
                constants=constants,
                drift_rules=DriftRules(stream.text_cells, stream.null_tokens),
                written_names=written_names(stream.outputs[dataset]),
            )
            sinks.append(self.sinks[key])
        # a resumed run's display starts from the records its checkpoint holds
        held = max((sum(p.rows for p in sink.writer.parts) for sink in sinks), default=0)
        self.reporter.add_stream(stream_key, rows=held, finished=state["done"])
        if state["done"]:
            return None
        if stream.incremental and "seeded" not in state:
            previous = find_cursor(self.storage, join(source.name, stream.folder(next(iter(stream.outputs)))),
                                   stream.incremental)
            state["walk"] = stream.seed(previous)
            if previous is not None:
                log.info("%s: incremental from %s", stream_key,
                         ", ".join(f"{k} {len(v) if isinstance(v, list) else v}" for k, v in previous.items()
                                   if k not in ("key", "run_id")))
            state["seeded"] = True
        return StreamPipeline(
            key=stream_key,
            stream=stream,
            state=state,
            sinks=sinks,
            converter=PageConverter(stream.schema, schema_drift=self.job.schema_drift, null_tokens=stream.null_tokens),
            settings=PipelineSettings(
                queue_pages=self.options.queue_pages,
                convert_ahead=self.options.convert_ahead,
                batch_rows=self.options.batch_rows,
                checkpoint_rows=self.options.checkpoint_rows or self.job.rows_per_file,
            ),
            convert_pool=self._convert_pool,
            writer_pool=self._writer_pool,
            reporter=self.reporter,
            save=self._save,
            on_producer=self._producers.append,
        )

    def _commit(self, results: dict[str, dict[str, Any]], finished: datetime) -> list[DatasetResult]:
        """Every dataset of every source succeeded: only now does anything become visible."""
        assert self.checkpoint is not None
        checkpoint = self.checkpoint
        info = RunInfo(
            run_id=checkpoint.run_id, job=self.job.name, job_file=str(self.job.path),
            fingerprint=self.job.fingerprint(), snapshot_date=checkpoint.snapshot_date,
            started_at=checkpoint.started_at, resumed=checkpoint.resumed, schema_drift=self.job.schema_drift,
        )
        out: list[DatasetResult] = []
        for key, sink in self.sinks.items():
            source, dataset = key.split("/", 1)
            where = self._targets[key] if self.tables is None else join(source, self._streams[key][0].folder(dataset))
            drift = sink.settle_drift()
            out.append(DatasetResult(
                source=source, dataset=dataset, rows=sum(p.rows for p in sink.writer.parts),
                files=[p.public() for p in sink.writer.parts], path=self.storage.describe(where),
                schema=sink.writer.schema, unknown_fields=dict(sink.unknown), withheld_fields=sorted(sink.withheld),
                rejects=dict(sink.rejects), rejected_rows=sink.rejected_rows, null_tokens=dict(sink.null_tokens),
                drift_types=drift.types, drift_fallbacks=drift.fallbacks,
            ))
        plans: list[PartitionPlan] = []
        for source in dict.fromkeys(r.source for r in out):
            mine = [r for r in out if r.source == source]
            manifest = build_manifest(info, source, mine, results.get(source, {}), finished.isoformat())
            for result in mine:
                key = f"{source}/{result.dataset}"
                sink = self.sinks[key]
                stream, stream_key = self._streams[key]
                documents: dict[str, Any] = {}
                if stream.incremental:
                    walk = checkpoint.streams.get(stream_key, {}).get("walk", {})
                    cursor = stream.cursor(stream.incremental, walk)
                    documents[CURSOR] = cursor | {"run_id": checkpoint.run_id}
                    manifest = manifest | {"incremental": {result.dataset: {
                        k: len(v) if isinstance(v, list) else v for k, v in cursor.items()}}}
                documents["_manifest.json"] = manifest
                folder = stream.folder(result.dataset)
                table = None if self.tables is None else table_spec(
                    join(source, folder), source, folder, self._partition(stream), sink.writer.schema)
                plans.append(PartitionPlan(
                    dataset=key, target=self._targets[key], staged=sink.partition,
                    parts=[p.state() for p in sink.writer.parts],
                    rejects=[join(sink.rejects_log.prefix, s) for s in sink.rejects_log.segments],
                    documents=documents, table=table,
                ))
        summary = {
            "snapshot_date": checkpoint.snapshot_date, "started_at": checkpoint.started_at,
            "finished_at": finished.isoformat(), "resumed": checkpoint.resumed,
            "requests": {k: v["requests"] for k, v in results.items()},
            "datasets": [{k: v for k, v in vars(r).items() if k != "schema"} for r in out],
        }
        self.committer.commit(checkpoint.run_id, plans, summary, before_visible=self.lease.renew)
        if self.tables is not None:
            for result in out:
                result.table = self.tables.reached.get(f"{result.source}/{result.dataset}")
        return out


def find_cursor(storage: Storage, folder: str, key: str) -> dict[str, Any] | None:
    """The newest published cursor of an incremental table."""
    cursors = []
    for found in storage.list(folder + "/"):
        if found.key.endswith("/" + CURSOR) and "/run_id=" in found.key:
            try:
                cursors.append(json.loads(storage.read(found.key) or b""))
            except ValueError:
                continue
    return pick_latest((c for c in cursors if isinstance(c, dict)), key)


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
