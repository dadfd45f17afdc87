"""One unit of a scaled-out run: one stream of one source, run on a Dask worker.

The coordinator (:mod:`exporter.cluster`) plans a :class:`UnitPlan` per (source, stream); the
plan names where the unit stages its datasets and carries the source's *declaration* only (its
``SourceSpec``: kind, datasets, options, page size, the ``env_prefix`` of its variables). No
secret travels in a task: the worker resolves the base URL and the credentials from its own
environment, under the same variable names a single-process run reads.

A unit keeps its own checkpoint (``_staging/<job>/units/<source>/<stream>.json``), written at the
same points a single-process run writes its checkpoint: a unit retried on another worker (its
worker died) resumes from there, dropping what the dead attempt wrote after it. This module needs
no Dask: it only reports progress through the worker's event log when it runs on one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from .drift import DriftRules
from .errors import ExporterError
from .estimate import Coverage
from .jobs import SourceSpec
from .pipeline import PipelineSettings, StreamPipeline
from .schema import PageConverter, empty_table
from .sink import DatasetSink, WriterSettings
from .sources import Connection, Source, Stream, registry, written_names
from .storage import Storage, join, open_storage
from .walk import Page

log = logging.getLogger("exporter.unit")

UNITS = "units"  # under _staging/<job>/


@dataclass(frozen=True)
class DatasetPlan:
    """Where one dataset of a unit is staged (decided by the coordinator's commit protocol)."""

    partition: str
    spool: str
    rejects_prefix: str
    tag: str
    constants: dict[str, Any] = field(default_factory=dict)  # table output: partition values in the files


@dataclass(frozen=True)
class UnitPlan:
    """A unit's task payload: declarations and staging keys, never a credential."""

    job: str
    run_id: str
    output: str
    s3_endpoint_url: str | None
    s3_region: str | None
    source: SourceSpec  # rps and concurrency already this unit's share of the source's budget
    stream: str
    schema_drift: str
    rows_per_file: int
    row_group_rows: int
    checkpoint_rows: int
    datasets: dict[str, DatasetPlan]  # dataset name -> where it is staged
    initial: dict[str, Any]  # the stream's state when the unit first starts (an incremental seed)
    checkpoint_key: str
    topic: str = ""  # progress events (the worker's event log); "" = none

    @property
    def key(self) -> str:
        return f"{self.source.name}/{self.stream}"


def unit_checkpoint_key(staging_root: str, source: str, stream: str) -> str:
    return join(staging_root, UNITS, source, f"{stream}.json")


class _Events:
    """The reporter a pipeline is given on a worker: rows and coverage sent to the coordinator as
    worker events, at most every ``every`` seconds (a page can be a millisecond of work)."""

    def __init__(self, topic: str, key: str, every: float = 0.5) -> None:
        self.topic, self.key, self.every = topic, key, every
        self.coverage: Coverage | None = None
        self._rows = 0
        self._sent = 0.0
        self._worker: Any = None
        if topic:
            try:
                from distributed import get_worker  # present: this runs on a Dask worker

                self._worker = get_worker()
            except (ImportError, ValueError):
                self._worker = None

    def add_stream(self, key: str, rows: int = 0, finished: bool = False) -> None:
        pass

    def watch(self, key: str, coverage: Coverage) -> None:
        self.coverage = coverage

    def advance(self, key: str, rows: int) -> None:
        self._rows += rows
        if time.monotonic() - self._sent >= self.every:
            self.send()

    def finish(self, key: str) -> None:
        self.send(done=True)

    def waiting(self, source: str, seconds: float, reason: str) -> None:
        self._emit({"wait": seconds, "reason": reason})

    def send(self, done: bool = False) -> None:
        rows, self._rows = self._rows, 0
        self._sent = time.monotonic()
        event: dict[str, Any] = {"rows": rows, "done": done}
        if self.coverage is not None:
            reading = self.coverage.read()
            event["coverage"] = [reading.done, reading.total, reading.planned, reading.estimated, reading.unit]
        self._emit(event)

    def _emit(self, event: dict[str, Any]) -> None:
        if self._worker is not None:
            with contextlib.suppress(Exception):  # progress is never worth failing a unit for
                self._worker.log_event(self.topic, {"unit": self.key, **event})


class UnitFailed(ExporterError):
    """A unit's error as it crosses back to the coordinator: its message and exit code survive
    pickling (some exporter errors take keyword arguments, which exceptions do not pickle)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message, exit_code)
        self.exit_code = exit_code

    def __str__(self) -> str:
        return str(self.args[0])


def run_unit(plan: UnitPlan) -> dict[str, Any]:
    """The task a worker runs. Returns the unit's durable state: the stream's walk state, each
    dataset's parts and counters, the request counters, and how often it resumed."""
    try:
        return asyncio.run(_run(plan, dict(os.environ)))
    except ExporterError as error:
        raise UnitFailed(f"{plan.key}: {error}" if plan.source.name not in str(error) else str(error),
                         error.exit_code) from None


async def _run(plan: UnitPlan, env: dict[str, str]) -> dict[str, Any]:
    storage = open_storage(plan.output, env=env, endpoint_url=plan.s3_endpoint_url, region=plan.s3_region)
    source: Source = registry()[plan.source.kind](plan.source)
    stream = next(s for s in source.streams() if s.name == plan.stream)
    saved = _load(storage, plan)
    state = saved["stream"] if saved else json.loads(json.dumps(plan.initial))
    dataset_states: dict[str, dict[str, Any]] = saved["datasets"] if saved else {}
    resumed = int(saved.get("resumed", 0)) + 1 if saved else 0
    if saved:
        log.info("%s: resuming unit from its checkpoint (attempt %d)", plan.key, resumed + 1)
    result: dict[str, Any] = {"stream": state, "datasets": dataset_states, "resumed": resumed}

    def save() -> None:
        body = {"run_id": plan.run_id, "stream": state, "datasets": dataset_states, "resumed": resumed}
        storage.write_atomic(plan.checkpoint_key, json.dumps(body, default=str).encode())

    if state.get("done"):
        return result | {"requests": {}, "base_url": "", "settings": source.manifest_extra()}
    convert_pool = ThreadPoolExecutor(2, thread_name_prefix="convert")
    writer_pool = ThreadPoolExecutor(2, thread_name_prefix="write")
    sinks = _sinks(plan, storage, stream, dataset_states)
    events = _Events(plan.topic, plan.key)
    try:
        with contextlib.ExitStack() as stack:
            if source.spec.sandbox is not None:
                connection: Connection = stack.enter_context(source.sandbox())
            else:
                connection = source.connection(env)  # this worker's own variables
            from .runner import _public_url, source_client

            client = source_client(source, connection)
            client.on_pause = lambda seconds, reason: events.waiting(source.name, seconds, reason)
            pipeline = StreamPipeline(
                key=plan.key, stream=stream, state=state, sinks=sinks,
                converter=PageConverter(stream.schema, schema_drift=plan.schema_drift, null_tokens=stream.null_tokens),
                settings=PipelineSettings(checkpoint_rows=plan.checkpoint_rows),
                convert_pool=convert_pool, writer_pool=writer_pool, reporter=events,  # type: ignore[arg-type]
                save=save, on_producer=lambda task: None,
            )
            async with client:
                try:
                    await pipeline.run(client)
                except BaseException:
                    writer_pool.shutdown(wait=True, cancel_futures=True)
                    for sink in sinks:
                        sink.abort()
                    raise
            return result | {
                "requests": client.stats.as_dict() | {"peak_in_flight": client.peak_in_flight},
                "base_url": _public_url(client.settings.base_url),
                "settings": source.manifest_extra(),
            }
    finally:
        convert_pool.shutdown(wait=True, cancel_futures=True)
        writer_pool.shutdown(wait=True)


def _load(storage: Storage, plan: UnitPlan) -> dict[str, Any] | None:
    """The unit's checkpoint of this run (one of an earlier run is stale: the coordinator clears
    the staging area of a run it does not resume)."""
    raw = storage.read(plan.checkpoint_key)
    try:
        saved = json.loads(raw) if raw else None
    except ValueError:
        return None
    return saved if isinstance(saved, dict) and saved.get("run_id") == plan.run_id else None


def _sinks(plan: UnitPlan, storage: Storage, stream: Stream, states: dict[str, dict[str, Any]]) -> list[DatasetSink]:
    settings = WriterSettings(rows_per_file=plan.rows_per_file, row_group_rows=plan.row_group_rows)
    sinks = []
    for dataset, project in stream.outputs.items():
        where = plan.datasets[dataset]
        key = f"{plan.source.name}/{dataset}"
        state = states.setdefault(key, {})
        state["partition"] = where.partition
        base = project(empty_table(stream.schema.arrow_schema()), Page(stream.name)).schema
        sinks.append(DatasetSink(
            key, storage, where.partition, where.rejects_prefix, state, settings, base, tag=where.tag,
            spool=where.spool, constants=where.constants or None,
            drift_rules=DriftRules(stream.text_cells, stream.null_tokens), written_names=written_names(project),
        ))
    return sinks


def share(spec: SourceSpec, units: int) -> SourceSpec:
    """A unit's share of its source's budget: the rate and the requests in flight divided among the
    source's units, so N units never ask N times the limit of one API key."""
    if units <= 1:
        return spec
    rps = spec.rps / units if spec.rps else spec.rps
    return replace(spec, rps=rps, concurrency=max(1, spec.concurrency // units))
