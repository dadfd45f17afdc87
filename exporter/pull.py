"""``exporter pull``: one dataset of one source, ad hoc, without writing a job file.

A pull *is* a run: the same source declarations, HTTP client, limits, retries, exact conversion,
drift handling and withheld secrets, into a private temporary folder that is removed afterwards.
Only then is the dataset read back, put in ascending id order, cut at ``--limit`` and written in
the format asked for. So a pull never disagrees with what ``run`` would have published, and what
reaches stdout or the file is complete or nothing.

``--limit N`` asks the source for a head walk: the first N records in id order, fetching only the
pages needed, where the API's order allows it (Tradesync keyset collections; TraderEvolution lists,
the statement, the Trades Report, one account's operations). Where it does not (the operations of
every account, one list per account), every record is fetched and the first N ids are kept.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import Interrupted, JobFileError
from .jobs import JobSpec, load_job, parse_job
from .progress import Reporter
from .runner import Run, RunOptions
from .sources import registry

log = logging.getLogger("exporter.pull")

# the walks set these themselves: a --param naming one would fight the paging
WALK_PARAMETERS = frozenset({"limit", "offset", "order", "last_id", "startDate", "endDate"})


@dataclass(frozen=True)
class PullRequest:
    source: str  # a kind (credentials from its usual variables) or, with a job, the name of one of its sources
    dataset: str
    job_file: Path | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    limit: int | None = None
    columns: tuple[str, ...] = ()
    sandbox: bool = False


def parse_params(items: tuple[str, ...]) -> dict[str, str]:
    """``--param KEY=VALUE`` items as a dict (a later KEY wins)."""
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise JobFileError(f"--param {item!r}: expected KEY=VALUE, e.g. --param state=open")
        params[key.strip()] = value
    return params


def pull_job(request: PullRequest) -> JobSpec:
    """The one-source, one-dataset job a pull runs; every mistake is a :class:`JobFileError`."""
    kinds = registry()
    where = str(request.job_file) if request.job_file else "pull"
    if request.job_file is not None:
        job = load_job(request.job_file, kinds)
        found = [s for s in job.sources if s.name == request.source]
        if not found:
            names = ", ".join(s.name for s in job.sources)
            raise JobFileError(f"{where}: no [sources.{request.source}] in this job (it has: {names})")
        spec = found[0]
    else:
        if request.source not in kinds:
            raise JobFileError(f"pull: unknown source {request.source!r}: name an API ({', '.join(kinds)}), "
                               "or give --job FILE and the name of one of its sources")
        job = parse_job({"name": "pull", "sources": {request.source: {}}}, Path("<pull>"), kinds)
        spec = job.sources[0]
    source_class = kinds[spec.kind]
    if request.dataset not in source_class.DATASETS:
        raise JobFileError(f"{where}: sources.{spec.name} ({spec.kind}) has no dataset {request.dataset!r} "
                           f"(it has: {', '.join(source_class.DATASETS)})")
    check_filters(request.params, source_class.filters(request.dataset), spec.kind, request.dataset)
    changes: dict[str, Any] = {
        "datasets": (request.dataset,),
        "options": spec.options.for_pull(),
        "filters": dict(request.params),
        "limit": request.limit,
    }
    if request.sandbox:
        # the built-in simulator, without rate limits on either side: a sandbox pull is a try-out
        changes |= {"sandbox": {"rate_limit_rps": 0, **(spec.sandbox or {})}, "rps": None}
    spec = replace(spec, **changes)
    return replace(job, name="pull", sources=(spec,), metrics_file=None, output=None)


def check_filters(params: Mapping[str, str], allowed: Mapping[str, str], kind: str, dataset: str) -> None:
    """Only the filters the dataset's API takes: an unknown one would be ignored by the API and
    the pull would silently return everything."""
    for name in params:
        if name in WALK_PARAMETERS:
            raise JobFileError(f"--param {name}: set by the walk itself, not a filter (use --limit for a first N)")
        if name not in allowed:
            takes = ", ".join(allowed) if allowed else "none"
            raise JobFileError(f"--param {name}: not a filter of {kind} {dataset} (it takes: {takes})")


@dataclass
class Pulled:
    table: pa.Table
    requests: int


async def fetch(job: JobSpec, env: Mapping[str, str], reporter: Reporter,
                on_run: Callable[[Run], None] | None = None) -> Pulled:
    """Run ``job`` (one source, one dataset) into a temporary folder and read the dataset back."""
    (spec,) = job.sources
    folder = Path(tempfile.mkdtemp(prefix="exporter-pull-"))
    try:
        runner = Run(job, RunOptions(output=folder, resume="fresh", env=env, reporter=reporter))
        if on_run is not None:
            on_run(runner)
        try:
            result = await runner.execute()
        except Interrupted:
            raise Interrupted("interrupted: nothing was written") from None
        (dataset,) = result.datasets
        # a pull is a snapshot: its one partition, OUTPUT/<source>/<dataset>/snapshot_date=D
        (partition,) = (folder / spec.name / dataset.dataset).glob("snapshot_date=*")
        tables = [pq.read_table(partition / part["name"]) for part in dataset.files]
        requests = sum(int(r.get("requests", 0)) for r in result.requests.values())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    key = registry()[spec.kind].key_of(dataset.dataset)
    return Pulled(_ordered(tables, key, spec.limit), requests)


def _ordered(tables: list[pa.Table], key: str, limit: int | None) -> pa.Table:
    """Every part as one table (drift columns are null in parts written before they appeared),
    in ascending id order, the first ``limit`` rows."""
    if not tables:
        raise AssertionError("a published dataset has at least one part file")
    schema = pa.unify_schemas([t.schema for t in tables], promote_options="default")
    table = pa.concat_tables([t.select([n for n in schema.names if n in t.column_names]) for t in tables],
                             promote_options="default").select(schema.names)
    if key in table.column_names:
        table = table.sort_by([(key, "ascending")])
    return table.slice(0, limit) if limit is not None else table


def select_columns(table: pa.Table, columns: tuple[str, ...]) -> pa.Table:
    """``--columns``: these, in this order; a name the dataset lacks is one line and exit 2."""
    if not columns:
        return table
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise JobFileError(f"--columns: no column {', '.join(missing)} (the dataset has: "
                           f"{', '.join(table.column_names)})")
    return table.select(list(columns))
