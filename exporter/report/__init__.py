"""``exporter report``: one self-contained HTML page about what the runs published.

It reads only published partitions (their ``_manifest.json`` and the Parquet files the manifests
list), through the storage seam, over the last N snapshots of each source. Aggregation is done
by Arrow batch by batch (:mod:`.aggregate`), so memory does not grow with the snapshot's size.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ExporterError
from ..fsutil import write_bytes_atomic
from ..storage import Storage, join, open_storage
from . import aggregate
from .page import Comparison, CurrencyHistory, Link, SourceView, render
from .snapshots import Snapshot, find_snapshots

REPORT_NAME = "report.html"
# which dataset names the accounts of a snapshot, in order of preference
ACCOUNT_IDS = (("accounts", "id"), ("balances", "account_id"), ("equity", "account_id"))


class ReportError(ExporterError):
    """Nothing to report on (exit 1), or a ``--source`` that the output does not hold (exit 2)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class ReportOptions:
    days: int = 30  # the last N snapshots (snapshot dates) of each source
    sources: tuple[str, ...] = ()  # only these sources (default: all)
    bucket_rows: int = aggregate.BUCKET_ROWS


def build_views(storage: Storage, options: ReportOptions) -> list[SourceView]:
    found = find_snapshots(storage)
    if not found:
        raise ReportError(f"no published snapshot under {storage.url} (a run publishes "
                          "<source>/<dataset>/snapshot_date=…/_manifest.json)")
    unknown = [s for s in options.sources if s not in found]
    if unknown:
        raise ReportError(f"--source {', '.join(unknown)}: no snapshot of it under {storage.url} "
                          f"(found: {', '.join(found)})", exit_code=2)
    chosen = options.sources or tuple(found)
    return [_source_view(storage, source, found[source][-options.days:], options) for source in chosen]


def _source_view(storage: Storage, source: str, snapshots: list[Snapshot], options: ReportOptions) -> SourceView:
    dates = [s.date for s in snapshots]
    folders = sorted({f for s in snapshots for f in s.partitions})
    latest = snapshots[-1]
    histogram = aggregate.histogram(storage, latest.files("equity"), "equity") if "equity" in latest.partitions else {}
    return SourceView(
        source=source,
        dates=dates,
        rows={f: [s.rows(f) for s in snapshots] for f in folders},
        currency=CurrencyHistory(dates, {s.date: _currency_totals(storage, s) for s in snapshots}),
        comparison=_compare(storage, snapshots[-2], latest, options) if len(snapshots) > 1 else None,
        histogram_date=latest.date if histogram else None,
        histogram=histogram,
        quality=[q for s in reversed(snapshots) for q in _quality(s)],
        runs=[r for s in reversed(snapshots) for r in _runs(s)],
    )


def _currency_totals(storage: Storage, snapshot: Snapshot) -> dict[str, dict[str, Any]]:
    totals: dict[str, dict[str, Any]] = {}
    for folder, values in (("balances", ["balance", "credit"]), ("equity", ["equity"])):
        for currency, sums in aggregate.currency_totals(storage, snapshot.files(folder), values).items():
            totals.setdefault(currency, {}).update(sums)
    return dict(sorted(totals.items()))


def _compare(storage: Storage, previous: Snapshot, latest: Snapshot, options: ReportOptions) -> Comparison:
    def buckets(folder: str) -> int:
        rows = max(latest.rows(folder) or 0, previous.rows(folder) or 0)
        return aggregate.buckets_for(rows, options.bucket_rows)

    ids_from, accounts = "", aggregate.Diff()
    for folder, key in ACCOUNT_IDS:
        if folder in latest.partitions and folder in previous.partitions:
            ids_from = folder
            accounts = aggregate.diff(storage, latest.files(folder), previous.files(folder), key,
                                      buckets=buckets(folder))
            break
    changes = {}
    for folder, value in (("balances", "balance"), ("equity", "equity")):
        if folder in latest.partitions and folder in previous.partitions:
            changes[value] = aggregate.diff(storage, latest.files(folder), previous.files(folder), "account_id",
                                            value, buckets=buckets(folder))
    return Comparison(latest=latest.date, previous=previous.date, ids_from=ids_from or "—", accounts=accounts,
                      changes=changes)


def _quality(snapshot: Snapshot) -> list[dict[str, Any]]:
    out = []
    for folder, partitions in sorted(snapshot.partitions.items()):
        for p in partitions:
            entry = p.entry
            item = {
                "date": snapshot.date, "dataset": folder, "partition": p.key,
                "rejects_file": join(p.key, "_rejects.jsonl") if p.has_rejects else None,
                "rejected_rows": int(entry.get("rejected_rows") or 0),
                "rejects_by_column": dict(entry.get("rejects_by_column") or {}),
                "drift": dict(entry.get("unknown_fields") or {}),
                "null_tokens": dict(entry.get("null_tokens") or {}),
                "withheld": list(entry.get("withheld_fields") or []),
            }
            if any(item[k] for k in ("rejected_rows", "rejects_by_column", "drift", "null_tokens", "withheld")):
                out.append(item)
    return out


def _runs(snapshot: Snapshot) -> list[dict[str, Any]]:
    out = []
    for manifest in reversed(snapshot.manifests()):
        out.append({
            "date": snapshot.date, "run_id": str(manifest.get("run_id", "?")),
            "seconds": _duration(manifest.get("started_at"), manifest.get("finished_at")),
            "requests": dict(manifest.get("requests") or {}), "resumed": int(manifest.get("resumed") or 0),
            "settings": dict(manifest.get("source_settings") or {}),
        })
    return out


def _duration(started: Any, finished: Any) -> float | None:
    try:
        return (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
    except (TypeError, ValueError):
        return None


def build_report(storage: Storage, options: ReportOptions, link: Link,
                 now: datetime | None = None) -> str:
    views = build_views(storage, options)
    return render("brokerexport report", storage.url, now or datetime.now(UTC), options.days, views, link)


def write_report(output: str, report_file: Path | None = None, options: ReportOptions | None = None,
                 env: Mapping[str, str] | None = None) -> str:
    """Write the report (default ``OUTPUT/report.html``, through the storage); returns where it went."""
    storage = open_storage(output, env=env if env is not None else os.environ)
    options = options or ReportOptions()
    local = getattr(storage, "path", None) if storage.kind == "local" else None

    def link(key: str) -> tuple[str, bool]:
        """Where a published file is, seen from the report: a relative link, or its URL as text."""
        if local is None:
            return storage.describe(key), False
        if report_file is None:
            return key, True
        return Path(os.path.relpath(local(key), Path(report_file).resolve().parent)).as_posix(), True

    html = build_report(storage, options, link).encode()
    if report_file is None:
        storage.write_atomic(REPORT_NAME, html)
        return storage.describe(REPORT_NAME)
    write_bytes_atomic(Path(report_file), html)
    return str(report_file)
