"""Test helpers: build jobs that point at a running simulator, read published snapshots."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from exporter.jobs import JobSpec, parse_job
from exporter.runner import RunOptions, RunResult, run_job
from exporter.sources import registry

SIM_ENV = {"TRADESYNC_API_KEY": "sim-key", "TRADESYNC_API_SECRET": "sim-secret"}


def make_job(sources: dict[str, Any], name: str = "test", **top: Any) -> JobSpec:
    return parse_job({"name": name, "sources": sources, **top}, Path(f"<{name}>"), registry())


def tradesync_env(base_url: str, **extra: str) -> dict[str, str]:
    return {**SIM_ENV, "TRADESYNC_BASE_URL": base_url, **extra}


def run(job: JobSpec, output: Path, env: dict[str, str], **options: Any) -> RunResult:
    return asyncio.run(run_job(job, RunOptions(output=output, env=env, **options)))


def read_dataset(output: Path, source: str, dataset: str) -> pa.Table:
    """A published dataset as one table, the way an analyst reads it (hive partitions)."""
    return ds.dataset(output / source / dataset, format="parquet", partitioning="hive").to_table()


def rows_by_id(table: pa.Table, drop: tuple[str, ...] = ("snapshot_at", "snapshot_date")) -> list[dict]:
    keep = [n for n in table.column_names if n not in drop]
    rows = table.select(keep).to_pylist()
    return sorted(rows, key=lambda r: r["id"])


def expected_value(value: Any, arrow_type: pa.DataType) -> Any:
    """What the served JSON value must become in Parquet, computed independently of the exporter."""
    if value is None:
        return None
    if pa.types.is_decimal(arrow_type):
        return Decimal(str(value))
    if pa.types.is_timestamp(arrow_type):
        text = value.replace("Z", "+00:00")
        parsed = datetime.fromisoformat(text)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return value
