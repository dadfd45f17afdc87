"""Load and validate job files (TOML). Errors name the file, the key and what is wrong.

    name = "tradesync"
    schema_drift = "evolve"          # or "strict"

    [sources.tradesync]
    datasets = ["accounts", "balances", "equity", "trades"]
    concurrency = 8                  # requests in flight at most
    rps = 5                          # requests per second for this source; 0 = no limit
    page_size = 1000
    max_attempts = 8                 # per request, transient errors included
    retry_seconds = 300              # per request: give up retrying after this long

    [sources.tradesync.sandbox]      # run against the built-in simulator instead of the API
    accounts = 2000

    [sources.eu]                     # a second tenant of the same API: its own name, credentials, folder
    kind = "tradesync"
    env_prefix = "EU_TS"             # EU_TS_API_KEY, EU_TS_API_SECRET, EU_TS_BASE_URL
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tomllib
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import JobFileError
from .names import check_name

SCHEMA_DRIFT = ("evolve", "strict")
LOG_FORMATS = ("text", "json")
FORMATS = ("parquet", "delta", "iceberg")
# an environment variable prefix: EU_TS reads EU_TS_API_KEY, ...
ENV_PREFIX = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
# a Dask scheduler: tcp://10.0.0.5:8786, tls://scheduler:8786
DASK_ADDRESS = re.compile(r"(tcp|tls|ws|wss|ucx)://[^\s/]+:[0-9]{1,5}")


@dataclass(frozen=True)
class Option:
    """One source-specific job setting: its type, default and a one-line description."""

    type: type | tuple[type, ...]
    default: Any
    help: str = ""
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    # a further test of a given value: raises ValueError whose text says what is wrong
    check: Callable[[Any], object] | None = None


def option(
    default: Any,
    help: str = "",
    *,
    choices: tuple[Any, ...] | None = None,
    minimum: float | None = None,
    check: Callable[[Any], object] | None = None,
) -> Any:
    """A field of a source's options dataclass that is also a job-file key (its type is the field's)."""
    rules = {"help": help, "choices": choices, "minimum": minimum, "check": check}
    return field(default=default, metadata={"option": rules})


def declared_options(options_class: type) -> dict[str, Option]:
    """The job-file keys a source's options dataclass declares, with their types (a ``float``
    field takes an integer too: ``rps = 5`` is a number of requests per second)."""
    hints = typing.get_type_hints(options_class)
    out: dict[str, Option] = {}
    for f in dataclasses.fields(options_class):
        rules = f.metadata.get("option")
        if rules is None:
            continue
        kind = hints[f.name]
        out[f.name] = Option((int, float) if kind is float else kind, f.default, **rules)
    return out


@dataclass(frozen=True)
class SourceOptions:
    """Base of every source's options: a frozen dataclass whose fields are job-file keys."""

    def for_pull(self) -> SourceOptions:
        """The options an ad hoc pull runs with: the same, unless a source keeps state between
        runs (an incremental table), which a one-off pull must not."""
        return self


@dataclass(frozen=True)
class SourceSpec:
    kind: str
    datasets: tuple[str, ...]
    concurrency: int
    rps: float | None
    page_size: int
    options: Any = None  # the source's options dataclass (None: its defaults)
    sandbox: dict[str, Any] | None = None
    max_attempts: int = 8
    retry_seconds: float = 300.0
    name: str = ""  # the [sources.NAME] table: names the output folder; default: the kind
    env_prefix: str = ""  # variables the credentials come from (default: the kind's, TRADESYNC_*)
    # pulls only: the API's own filters (``state=open``) and the first N records in id order
    filters: dict[str, str] = field(default_factory=dict)
    limit: int | None = None

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.kind)

    def shape(self) -> dict[str, Any]:
        """What decides what this source fetches and where it goes (the job fingerprint's part).
        A source whose name is its kind and that reads the default variables hashes as before."""
        options = self.options
        if dataclasses.is_dataclass(options) and not isinstance(options, type):
            options = dataclasses.asdict(options)
        shape: dict[str, Any] = {
            "kind": self.kind,
            "datasets": sorted(self.datasets),
            "page_size": self.page_size,
            "options": options or {},
            "sandbox": self.sandbox,
        }
        extra = {"name": self.name if self.name != self.kind else None, "env_prefix": self.env_prefix or None,
                 "filters": self.filters or None, "limit": self.limit}
        return shape | {k: v for k, v in extra.items() if v is not None}


@dataclass(frozen=True)
class JobSpec:
    path: Path
    name: str
    sources: tuple[SourceSpec, ...]
    output: str | None = None  # a folder or s3://BUCKET/PREFIX
    schema_drift: str = "evolve"
    log_format: str = "text"
    rows_per_file: int = 1_000_000
    lease_ttl_seconds: float = 60.0
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    format: str = "parquet"  # parquet (Hive folders), delta or iceberg (tables: exporter/tables.py)
    iceberg: dict[str, str] = field(default_factory=dict)  # the [iceberg] table: catalog properties
    metrics_file: str | None = None  # Prometheus text file written when a run ends
    cluster: str | None = None  # a Dask scheduler the run's units go to (exporter/cluster.py)

    def fingerprint(self) -> str:
        """A hash of everything that decides *what* a run fetches and how rows are shaped.

        Checkpoints carry it: a checkpoint written under another definition is refused.
        """
        shape = {
            "name": self.name,
            "schema_drift": self.schema_drift,
            "sources": [s.shape() for s in self.sources],
        }
        if self.format != "parquet":  # (absent for Parquet: checkpoints of earlier versions stay valid)
            shape["format"] = self.format  # table formats stage other files (Iceberg's hold the partition columns)
        return hashlib.sha256(json.dumps(shape, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def with_overrides(
        self,
        *,
        datasets: tuple[str, ...] = (),
        concurrency: int | None = None,
        rps: float | None = None,
        log_format: str | None = None,
        output_format: str | None = None,
    ) -> JobSpec:
        """Apply command-line flags (they beat the job file)."""
        sources = []
        for source in self.sources:
            chosen = source.datasets
            if datasets:
                chosen = tuple(d for d in source.datasets if d in datasets)
            sources.append(
                replace(
                    source,
                    datasets=chosen,
                    concurrency=concurrency if concurrency is not None else source.concurrency,
                    rps=(rps if rps > 0 else None) if rps is not None else source.rps,
                )
            )
        if datasets:
            for dataset in datasets:
                check_name(dataset, str(self.path), "--dataset")
            known = {d for s in self.sources for d in s.datasets}
            unknown = sorted(set(datasets) - known)
            if unknown:
                raise JobFileError(
                    f"{self.path}: --dataset {', '.join(unknown)} is not in this job "
                    f"(it has: {', '.join(sorted(known))})"
                )
        return replace(
            self,
            sources=tuple(s for s in sources if s.datasets),
            log_format=log_format or self.log_format,
            format=output_format or self.format,
        )


def load_job(path: str | Path, registry: dict[str, Any]) -> JobSpec:
    """Read and validate a job file. ``registry`` maps source kinds to their source classes,
    which declare ``DATASETS`` (names), ``Options`` (a dataclass of :func:`option` fields) and
    ``ENV_PREFIX`` (where credentials come from by default)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JobFileError(f"{path}: job file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobFileError(f"{path}: cannot read job file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise JobFileError(f"{path}: not valid TOML: {exc}") from None
    return parse_job(raw, path, registry)


def parse_job(raw: dict[str, Any], path: Path, registry: dict[str, Any]) -> JobSpec:
    where = str(path)
    _no_unknown(raw, {"name", "output", "schema_drift", "log_format", "rows_per_file", "lease_ttl_seconds", "s3",
                      "sources", "metrics_file", "format", "iceberg", "cluster"}, where, "")
    name = _get(raw, "name", str, where, "", default=path.stem)
    # the name is a folder (OUTPUT/_staging/<name>) that a run removes: '..' would be OUTPUT itself
    check_name(name, where, "key 'name'" if "name" in raw else "key 'name' (not set, so the file name)")
    schema_drift = _get(raw, "schema_drift", str, where, "", default="evolve", choices=SCHEMA_DRIFT)
    log_format = _get(raw, "log_format", str, where, "", default="text", choices=LOG_FORMATS)
    rows_per_file = _get(raw, "rows_per_file", int, where, "", default=1_000_000, minimum=1000)
    output = raw.get("output")
    if output is not None and (not isinstance(output, str) or not output):
        raise JobFileError(f"{where}: key 'output' must be a folder or s3://BUCKET/PREFIX")
    metrics_file = raw.get("metrics_file")
    if metrics_file is not None and (not isinstance(metrics_file, str) or not metrics_file or "://" in metrics_file):
        raise JobFileError(f"{where}: key 'metrics_file' must be a local file path (e.g. /var/lib/node_exporter/"
                           f"textfile/nightly.prom), got {metrics_file!r}")
    cluster = raw.get("cluster")
    if cluster is not None and (not isinstance(cluster, str) or not DASK_ADDRESS.fullmatch(cluster)):
        raise JobFileError(f"{where}: key 'cluster' must be a Dask scheduler address (tcp://HOST:PORT), "
                           f"got {cluster!r}")
    lease_ttl = _get(raw, "lease_ttl_seconds", (int, float), where, "", default=60, minimum=2)
    s3 = raw.get("s3", {})
    if not isinstance(s3, dict):
        raise JobFileError(f"{where}: key 's3' must be a table (endpoint_url, region)")
    _no_unknown(s3, {"endpoint_url", "region"}, where, "s3.")
    endpoint_url = _get(s3, "endpoint_url", str, where, "s3.", default=None)
    region = _get(s3, "region", str, where, "s3.", default=None)
    output_format = _get(raw, "format", str, where, "", default="parquet", choices=FORMATS)
    iceberg = _iceberg_properties(raw.get("iceberg", {}), where)
    sources_raw = raw.get("sources")
    if not isinstance(sources_raw, dict) or not sources_raw:
        raise JobFileError(f"{where}: needs at least one [sources.<name>] table ({', '.join(registry)})")
    sources = []
    for source_name, table in sources_raw.items():
        check_name(source_name, where, "key 'sources.<name>'")  # a published folder: OUTPUT/<source>/
        if not isinstance(table, dict):
            raise JobFileError(f"{where}: [sources.{source_name}] must be a table")
        kind = table.get("kind", source_name)
        if not isinstance(kind, str) or kind not in registry:
            if "kind" in table:
                raise JobFileError(f"{where}: key 'sources.{source_name}.kind' must be one of {', '.join(registry)}, "
                                   f"got {kind!r}")
            raise JobFileError(f"{where}: [sources.{source_name}]: unknown source (known: {', '.join(registry)}); "
                               f"a source named otherwise says which API it is: kind = \"tradesync\"")
        sources.append(_parse_source(source_name, kind, table, registry[kind], where))
    _one_tenant_per_environment(sources, registry, where)
    return JobSpec(
        path=path,
        name=name,
        sources=tuple(sources),
        output=output or None,
        schema_drift=schema_drift,
        log_format=log_format,
        rows_per_file=rows_per_file,
        lease_ttl_seconds=float(lease_ttl),
        s3_endpoint_url=endpoint_url,
        s3_region=region,
        format=output_format,
        iceberg=iceberg,
        metrics_file=metrics_file,
        cluster=cluster,
    )


def _iceberg_properties(table: Any, where: str) -> dict[str, str]:
    """``[iceberg]``: any catalog's properties (pyiceberg's names: ``type``, ``uri``, ``warehouse``,
    ``s3.endpoint``, ...), plus ``name`` (the catalog's name, default ``brokerexport``). Values are
    strings, numbers or booleans; secrets belong in the environment (``PYICEBERG_CATALOG__...``)."""
    if not isinstance(table, dict):
        raise JobFileError(f"{where}: key 'iceberg' must be a table of catalog properties (type, uri, ...)")
    properties: dict[str, str] = {}
    for key, value in table.items():
        if isinstance(value, bool):
            properties[key] = "true" if value else "false"
        elif isinstance(value, (str, int, float)):
            properties[key] = str(value)
        else:
            raise JobFileError(f"{where}: key 'iceberg.{key}' must be a string, number or boolean")
    if "name" in properties:
        check_name(properties["name"], where, "key 'iceberg.name'")
    return properties


def _parse_source(name: str, kind: str, table: dict[str, Any], source_cls: Any, where: str) -> SourceSpec:
    prefix = f"sources.{name}."
    generic = {"kind", "env_prefix", "datasets", "concurrency", "rps", "page_size", "sandbox", "max_attempts",
               "retry_seconds"}
    options_spec = declared_options(source_cls.Options)
    _no_unknown(table, generic | set(options_spec), where, prefix)
    env_prefix = _get(table, "env_prefix", str, where, prefix, default="")
    if "env_prefix" in table and not ENV_PREFIX.fullmatch(env_prefix):
        raise JobFileError(f"{where}: key '{prefix}env_prefix' must be an environment variable prefix: "
                           f"capital letters, digits and '_', starting with a letter (e.g. \"EU_TS\"), "
                           f"got {env_prefix!r}")
    all_datasets = tuple(source_cls.DATASETS)
    datasets = table.get("datasets", list(getattr(source_cls, "DEFAULT_DATASETS", all_datasets)))
    if not isinstance(datasets, list) or not datasets or not all(isinstance(d, str) for d in datasets):
        raise JobFileError(f"{where}: key '{prefix}datasets' must be a non-empty list of names")
    for d in datasets:
        check_name(d, where, f"key '{prefix}datasets'")  # a published folder: OUTPUT/<source>/<dataset>/
        if d not in all_datasets:
            raise JobFileError(
                f"{where}: key '{prefix}datasets': unknown dataset {d!r} (known: {', '.join(all_datasets)})"
            )
    concurrency = _get(table, "concurrency", int, where, prefix, default=8, minimum=1)
    rps = _get(table, "rps", (int, float), where, prefix, default=source_cls.DEFAULT_RPS, minimum=0)
    page_size = _get(table, "page_size", int, where, prefix, default=source_cls.DEFAULT_PAGE_SIZE, minimum=1)
    max_attempts = _get(table, "max_attempts", int, where, prefix, default=8, minimum=1)
    retry_seconds = _get(table, "retry_seconds", (int, float), where, prefix, default=300, minimum=0)
    options = {
        key: _get(table, key, opt.type, where, prefix, default=opt.default, choices=opt.choices, minimum=opt.minimum)
        for key, opt in options_spec.items()
    }
    for key, opt in options_spec.items():
        if opt.check is not None and key in table:
            try:
                opt.check(options[key])
            except ValueError as exc:
                raise JobFileError(f"{where}: key '{prefix}{key}': {exc}") from None
    sandbox = table.get("sandbox")
    if sandbox is not None and not isinstance(sandbox, dict):
        raise JobFileError(f"{where}: key '{prefix}sandbox' must be a table of simulator settings")
    return SourceSpec(
        kind=kind,
        datasets=tuple(dict.fromkeys(datasets)),
        concurrency=concurrency,
        rps=float(rps) if rps else None,
        page_size=page_size,
        options=source_cls.Options(**options),
        sandbox=dict(sandbox) if sandbox is not None else None,
        max_attempts=max_attempts,
        retry_seconds=float(retry_seconds),
        name=name,
        env_prefix=env_prefix,
    )


def _one_tenant_per_environment(sources: list[SourceSpec], registry: dict[str, Any], where: str) -> None:
    """Two sources reading the same variables would export one tenant twice under two names:
    almost certainly a forgotten ``env_prefix``, and silently wrong data if let through."""
    seen: dict[tuple[str, str], str] = {}
    for spec in sources:
        if spec.sandbox is not None:
            continue
        env = spec.env_prefix or registry[spec.kind].ENV_PREFIX
        other = seen.setdefault((spec.kind, env), spec.name)
        if other != spec.name:
            example = re.sub("[^A-Z0-9]+", "_", spec.name.upper()).strip("_")
            example = example if ENV_PREFIX.fullmatch(example) else "EU_TS"
            raise JobFileError(
                f"{where}: [sources.{other}] and [sources.{spec.name}] both read the {env}_* variables: "
                f"give each its own env_prefix (e.g. env_prefix = \"{example}\")"
            )


def _no_unknown(table: dict[str, Any], allowed: set[str], where: str, prefix: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise JobFileError(
            f"{where}: unknown key '{prefix}{unknown[0]}' (allowed here: {', '.join(sorted(allowed))})"
        )


def _get(
    table: dict[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    where: str,
    prefix: str,
    *,
    default: Any,
    choices: tuple[Any, ...] | None = None,
    minimum: float | None = None,
) -> Any:
    if key not in table:
        return default
    value = table[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise JobFileError(f"{where}: key '{prefix}{key}' must be {names}, got {value!r}")
    if choices is not None and value not in choices:
        raise JobFileError(f"{where}: key '{prefix}{key}' must be one of {', '.join(map(str, choices))}, got {value!r}")
    if minimum is not None and value < minimum:
        raise JobFileError(f"{where}: key '{prefix}{key}' must be >= {minimum}, got {value!r}")
    return value
