"""A run scaled out on Dask: the coordinator plans units, workers run them, the coordinator commits.

The coordinator is this process. It does everything a single-process :class:`~exporter.runner.Run`
does except fetching: it takes and renews the lease, opens (or resumes) the run's checkpoint,
plans one :class:`~exporter.unit.UnitPlan` per (source, stream), submits them to the cluster, and
merges each finished unit's durable state (walk state, part files, counters) into its checkpoint.
Once every unit is done it publishes through the same commit protocol, so the output is the one a
single process writes. Only this module imports Dask, and only when ``--workers`` or
``--cluster`` asks for it.

Failures: a worker that dies mid-unit makes the scheduler run the unit again elsewhere (up to
``distributed.scheduler.allowed-failures`` times); the new attempt resumes from the unit's
checkpoint. A unit that raises fails the run as a single process would: nothing is published,
finished units are in the checkpoint and a rerun runs only the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .drift import DriftRules
from .errors import ConfigError, name_source
from .estimate import Coverage
from .incremental import seed_walk_state
from .jobs import JobSpec
from .runner import Run, RunOptions, RunResult, find_cursor
from .schema import empty_table
from .sink import DatasetSink, WriterSettings
from .sources import Source, Stream, written_names
from .storage import Storage, join
from .unit import DatasetPlan, UnitPlan, run_unit, share, unit_checkpoint_key
from .walk import Page

log = logging.getLogger("exporter.cluster")


@dataclass(frozen=True)
class ClusterOptions:
    workers: int | None = None  # a local cluster of this many worker processes
    address: str | None = None  # an existing scheduler: tcp://HOST:PORT
    shared_output: bool = False  # a local output path every worker mounts at the same place


def is_local_address(address: str) -> bool:
    """A scheduler on this machine's loopback: its workers (if it has only local ones) see our disk."""
    host = urlsplit(address if "://" in address else f"tcp://{address}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_output_reachable(storage: Storage, options: ClusterOptions) -> None:
    """Workers write the part files: a folder only this machine sees would lose them."""
    if storage.kind != "local" or options.shared_output or options.workers or is_local_address(options.address or ""):
        return
    raise ConfigError(
        f"output {storage.url} is a local folder, which the workers of {options.address} cannot reach: use "
        "s3://BUCKET/PREFIX, or a folder mounted at the same path on every worker and --shared-output"
    )


class ClusterRun(Run):
    """A :class:`Run` whose streams run as Dask tasks; set-up, checkpoint and commit are inherited."""

    def __init__(self, job: JobSpec, options: RunOptions, cluster: ClusterOptions,
                 storage: Storage | None = None) -> None:
        super().__init__(job, options, storage)
        self.cluster = cluster
        check_output_reachable(self.storage, cluster)
        self._client: Any = None
        self._futures: list[Any] = []
        self._cancelling: asyncio.Future[Any] | None = None
        self._coverage: dict[str, Coverage] = {}
        self.unit_results: dict[str, dict[str, Any]] = {}  # unit key -> what its last attempt returned
        self.plans: dict[str, UnitPlan] = {}  # unit key -> its task payload
        self.dashboard: str | None = None

    async def execute(self) -> RunResult:
        from distributed import Client, LocalCluster

        if not log.isEnabledFor(logging.DEBUG):  # Dask's own INFO lines would drown the run's progress
            logging.getLogger("distributed").setLevel(logging.WARNING)
        async with contextlib.AsyncExitStack() as stack:
            if self.cluster.workers:
                # a unit mostly waits on its API's rate limit: a worker runs its share of them at
                # once (one thread each), or units would queue behind each other's limits
                units = sum(len(s.streams()) for s in self.sources)
                local = await stack.enter_async_context(LocalCluster(
                    n_workers=self.cluster.workers, processes=True, asynchronous=True,
                    threads_per_worker=max(1, -(-units // self.cluster.workers)),
                    dashboard_address=":0", silence_logs=logging.WARNING,
                ))
                address: Any = local
            else:
                address = self.cluster.address
            self._client = await stack.enter_async_context(Client(address, asynchronous=True))
            self.dashboard = _dashboard(self._client)
            log.info("running on the Dask cluster %s (%d workers)%s", self._client.scheduler.address,
                     len(self._client.scheduler_info().get("workers", {})),
                     f"; dashboard: {self.dashboard}" if self.dashboard else "")
            self._client.subscribe_topic(self._topic, self._on_event)
            try:
                return await super().execute()
            finally:
                with contextlib.suppress(Exception):
                    self._client.unsubscribe_topic(self._topic)
                self._futures.clear()

    @property
    def _topic(self) -> str:
        return f"exporter-progress-{self.job.name}"

    def request_stop(self) -> None:
        super().request_stop()
        if self._client is not None and self._futures:  # (called on the event loop: a signal handler)
            self._cancelling = asyncio.ensure_future(self._client.cancel(list(self._futures)))

    # ---- hooks of Run

    def _check_credentials(self) -> None:
        """Credentials are the workers' business: this machine may hold none."""

    def _open_checkpoint(self) -> Any:
        checkpoint = super()._open_checkpoint()
        checkpoint.save()  # units stage under this run's id from their first page: keep it findable
        return checkpoint

    async def _run_source(self, source: Source, results: dict[str, Any]) -> None:
        try:
            streams = source.streams()
            # the source's rate and requests in flight are one budget for all of its units
            spec = share(source.spec, len(streams))
            outcomes = await asyncio.gather(*(self._run_unit(source, spec, stream) for stream in streams))
        except BaseException as error:
            name_source(error, source.name)
            raise
        requests = merge_requests([o.get("requests", {}) for o in outcomes])
        base_url = next((o["base_url"] for o in outcomes if o.get("base_url")), "")
        settings = next((o["settings"] for o in outcomes if o.get("settings")), source.manifest_extra())
        results[source.name] = {"kind": source.kind, "requests": requests, "base_url": base_url,
                                "settings": settings}

    async def _run_unit(self, source: Source, spec: Any, stream: Stream) -> dict[str, Any]:
        assert self.checkpoint is not None
        checkpoint = self.checkpoint
        stream_key = f"{source.name}/{stream.name}"
        state = checkpoint.streams.setdefault(stream_key, {"walk": {}, "done": False})
        run_id = checkpoint.run_id
        plans: dict[str, DatasetPlan] = {}
        for dataset in stream.outputs:
            key = f"{source.name}/{dataset}"
            target = self._target(source.name, stream, dataset)
            self._targets[key] = target
            self._streams[key] = (stream, stream_key)
            constants = self.tables.file_columns(self._partition(stream)) if self.tables is not None else {}
            plans[dataset] = DatasetPlan(
                partition=self.committer.staged_partition(run_id, target),
                spool=self.committer.spool_partition(run_id, target),
                rejects_prefix=self.committer.rejects_prefix(run_id, key),
                tag=self.committer.part_tag(run_id), constants=constants,
            )
        held = max((sum(p["rows"] for p in checkpoint.datasets.get(f"{source.name}/{d}", {}).get("parts", []))
                    for d in stream.outputs), default=0)
        self.reporter.add_stream(stream_key, rows=held, finished=state["done"])
        coverage = self._coverage[stream_key] = Coverage()
        self.reporter.watch(stream_key, coverage)
        if not state["done"]:
            if stream.incremental and "seeded" not in state:
                previous = find_cursor(self.storage, join(source.name, stream.folder(next(iter(stream.outputs)))),
                                       stream.incremental)
                state["walk"] = seed_walk_state(previous)
                state["seeded"] = True
            plan = UnitPlan(
                job=self.job.name, run_id=run_id, output=str(self.options.output),
                s3_endpoint_url=self.job.s3_endpoint_url, s3_region=self.job.s3_region,
                source=spec, stream=stream.name, schema_drift=self.job.schema_drift,
                rows_per_file=self.job.rows_per_file,
                row_group_rows=min(self.options.row_group_rows, self.job.rows_per_file),
                checkpoint_rows=self.options.checkpoint_rows or self.job.rows_per_file,
                datasets=plans, initial=state,
                checkpoint_key=unit_checkpoint_key(self.committer.root, source.name, stream.name),
                topic=self._topic,
            )
            self.plans[stream_key] = plan
            future = self._client.submit(run_unit, plan, key=f"unit-{run_id}-{stream_key}", pure=False)
            self._futures.append(future)
            try:
                outcome = await future
            except asyncio.CancelledError:
                # another unit failed or the run stops: this one must not keep writing (a rerun's
                # unit of the same key takes over a task still running on its worker)
                with contextlib.suppress(Exception):
                    await self._client.cancel([future])
                raise
            self.unit_results[stream_key] = outcome
            state.clear()
            state.update(outcome["stream"])
            state["requests"] = outcome.get("requests", {})
            for key, dataset_state in outcome["datasets"].items():
                checkpoint.datasets[key] = dataset_state
            self._save()  # the unit's work is the run's now: a rerun of the coordinator skips it
            self.reporter.finish(stream_key)
        self._adopt(source, stream, plans)
        return {"requests": state.get("requests", {}), "base_url": self.unit_results.get(stream_key, {})
                .get("base_url", ""), "settings": self.unit_results.get(stream_key, {}).get("settings")}

    def _adopt(self, source: Source, stream: Stream, plans: dict[str, DatasetPlan]) -> None:
        """The coordinator's view of a finished unit's datasets, from their durable state, for the commit."""
        assert self.checkpoint is not None
        settings = WriterSettings(rows_per_file=self.job.rows_per_file,
                                  row_group_rows=min(self.options.row_group_rows, self.job.rows_per_file))
        for dataset, project in stream.outputs.items():
            key = f"{source.name}/{dataset}"
            where = plans[dataset]
            base = project(empty_table(stream.schema.arrow_schema()), Page(stream.name)).schema
            self.sinks[key] = DatasetSink(
                key, self.storage, where.partition, where.rejects_prefix, self.checkpoint.datasets[key], settings,
                base, tag=where.tag, spool=where.spool, constants=where.constants or None,
                drift_rules=DriftRules(stream.text_cells, stream.null_tokens), written_names=written_names(project),
            )

    # ---- progress from the workers

    def _on_event(self, event: Any) -> None:
        _, message = event if isinstance(event, tuple) else (None, event)
        if not isinstance(message, dict) or message.get("unit") not in self.reporter.streams:
            return
        key = message["unit"]
        if "wait" in message:
            self.reporter.waiting(key.split("/", 1)[0], float(message["wait"]), str(message.get("reason", "")))
            return
        if message.get("rows"):
            self.reporter.advance(key, int(message["rows"]))
        found = message.get("coverage")
        coverage = self._coverage.get(key)
        if found and coverage is not None:
            coverage.done, coverage.total, coverage.planned, coverage.estimated, coverage.unit = found
        if message.get("done"):
            self.reporter.finish(key)


def _dashboard(client: Any) -> str | None:
    try:
        link = client.dashboard_link
    except Exception:
        return None
    # without bokeh the scheduler serves no dashboard; the link would lead nowhere
    services = client.scheduler_info().get("services", {})
    return link if "dashboard" in services else None


def merge_requests(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """The request counters of a source's units as one source's: counts add up, peaks take the max."""
    out: dict[str, Any] = {}
    for one in stats:
        for key, value in one.items():
            if key == "peak_in_flight":
                out[key] = max(out.get(key, 0), value)
            elif isinstance(value, bool):
                out[key] = out.get(key, False) or value
            elif isinstance(value, (int, float)):
                out[key] = out.get(key, 0) + value
            elif isinstance(value, dict) and all(isinstance(v, (int, float)) for v in value.values()):
                # settled_rps too: each unit learned its share of the rate, the source's is their sum
                out[key] = dict(Counter(out.get(key, {})) + Counter(value))
            elif isinstance(value, list):
                out[key] = sorted(set(out.get(key, [])) | set(value))
            else:
                out.setdefault(key, value)
    return out


async def run_cluster_job(job: JobSpec, options: RunOptions, cluster: ClusterOptions) -> RunResult:
    return await ClusterRun(job, options, cluster).execute()
