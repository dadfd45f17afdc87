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
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import JobFileError
from .names import check_name

SCHEMA_DRIFT = ("evolve", "strict")
LOG_FORMATS = ("text", "json")
FORMATS = ("parquet", "delta", "iceberg")


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


@dataclass(frozen=True)
class SourceSpec:
    kind: str
    datasets: tuple[str, ...]
    concurrency: int
    rps: float | None
    page_size: int
    options: dict[str, Any] = field(default_factory=dict)
    sandbox: dict[str, Any] | None = None
    max_attempts: int = 8
    retry_seconds: float = 300.0


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

    def fingerprint(self) -> str:
        """A hash of everything that decides *what* a run fetches and how rows are shaped.

        Checkpoints carry it: a checkpoint written under another definition is refused.
        """
        shape = {
            "name": self.name,
            "schema_drift": self.schema_drift,
            "sources": [
                {
                    "kind": s.kind,
                    "datasets": sorted(s.datasets),
                    "page_size": s.page_size,
                    "options": s.options,
                    "sandbox": s.sandbox,
                }
                for s in self.sources
            ],
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
    which declare ``DATASETS`` (names) and ``OPTIONS`` (name -> :class:`Option`)."""
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
                      "sources", "metrics_file", "format", "iceberg"}, where, "")
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
    for kind, table in sources_raw.items():
        check_name(kind, where, "key 'sources.<name>'")  # a published folder: OUTPUT/<source>/
        if kind not in registry:
            raise JobFileError(f"{where}: [sources.{kind}]: unknown source (known: {', '.join(registry)})")
        if not isinstance(table, dict):
            raise JobFileError(f"{where}: [sources.{kind}] must be a table")
        sources.append(_parse_source(kind, table, registry[kind], where))
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


def _parse_source(kind: str, table: dict[str, Any], source_cls: Any, where: str) -> SourceSpec:
    prefix = f"sources.{kind}."
    generic = {"datasets", "concurrency", "rps", "page_size", "sandbox", "max_attempts", "retry_seconds"}
    options_spec: dict[str, Option] = source_cls.OPTIONS
    _no_unknown(table, generic | set(options_spec), where, prefix)
    all_datasets = tuple(source_cls.DATASETS)
    datasets = table.get("datasets", list(all_datasets))
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
        options=options,
        sandbox=dict(sandbox) if sandbox is not None else None,
        max_attempts=max_attempts,
        retry_seconds=float(retry_seconds),
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
