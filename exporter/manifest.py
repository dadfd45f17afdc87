"""The ``_manifest.json`` of a snapshot: built from plain values, no I/O.

One manifest per dataset partition describes the whole snapshot of its source: what every dataset
holds (rows, files, schema, drift, rejects) and what the run cost (requests, retries, 429s).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from . import __version__


@dataclass
class DatasetResult:
    source: str
    dataset: str
    rows: int
    files: list[dict[str, Any]]  # name, rows, bytes
    path: str  # where readers find it (a folder or an s3:// URL)
    schema: pa.Schema | None = None
    unknown_fields: dict[str, int] = field(default_factory=dict)
    withheld_fields: list[str] = field(default_factory=list)
    rejects: dict[str, int] = field(default_factory=dict)
    rejected_rows: int = 0
    null_tokens: dict[str, int] = field(default_factory=dict)
    table: dict[str, Any] | None = None  # Delta or Iceberg output: the version or snapshot the run committed
    drift_types: dict[str, str] = field(default_factory=dict)  # column -> its settled form
    drift_fallbacks: dict[str, str] = field(default_factory=dict)  # column -> why it is JSON text

    @property
    def bytes(self) -> int:
        return sum(int(p["bytes"]) for p in self.files)


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    job: str
    job_file: str
    fingerprint: str
    snapshot_date: str
    started_at: str
    resumed: int
    schema_drift: str


def build_manifest(run: RunInfo, source: str, datasets: list[DatasetResult], source_info: dict[str, Any],
                   finished_at: str) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "job": run.job,
        "job_file": run.job_file,
        "job_fingerprint": run.fingerprint,
        "source": source,
        "base_url": source_info.get("base_url"),
        "snapshot_date": run.snapshot_date,
        "started_at": run.started_at,
        "finished_at": finished_at,
        "exporter_version": __version__,
        "resumed": run.resumed,
        "schema_drift": run.schema_drift,
        "source_settings": source_info.get("settings", {}),
        "datasets": {
            d.dataset: {
                "rows": d.rows,
                "bytes": d.bytes,
                "files": d.files,
                "schema": [{"name": f.name, "type": str(f.type)} for f in d.schema or []],
                "unknown_fields": d.unknown_fields,
                "drift_types": d.drift_types,
                "drift_fallbacks": d.drift_fallbacks,
                "withheld_fields": d.withheld_fields,
                "rejected_rows": d.rejected_rows,
                "rejects_by_column": d.rejects,
                "null_tokens": d.null_tokens,
            }
            for d in datasets
        },
        "requests": source_info.get("requests", {}),
    }
