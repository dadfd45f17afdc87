"""The end-of-run summary as one JSON object (``exporter run --summary json``), for Airflow's XCom
and scripts: what was published where, and what it cost."""

from __future__ import annotations

from typing import Any

from .runner import RunResult


def summary_json(result: RunResult) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "job": result.job,
        "snapshot_date": result.snapshot_date,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "seconds": round(result.seconds, 3),
        "resumed": result.resumed,
        "recovered": result.recovered,  # the commit of an interrupted run was completed, nothing fetched
        "rows": sum(d.rows for d in result.datasets),
        "datasets": [
            {
                "source": d.source,
                "dataset": d.dataset,
                "rows": d.rows,
                "files": len(d.files),
                "bytes": d.bytes,
                "path": d.path,
                "rejected_rows": d.rejected_rows,
                "rejects_by_column": d.rejects,
                "unknown_fields": d.unknown_fields,
                "withheld_fields": d.withheld_fields,
                "null_tokens": d.null_tokens,
            } | ({"table": d.table} if d.table else {})  # Delta/Iceberg: the version or snapshot committed
            for d in result.datasets
        ],
        "requests": result.requests,
    }
