"""What the runs published, found through their manifests (nothing else is read here).

A published partition is ``<source>/<dataset>/snapshot_date=D/`` (an incremental table adds
``run_id=R/``) holding a ``_manifest.json``; a partition without one is not published yet and is
ignored, like everything under ``_staging/``. A *snapshot* of a source is one snapshot date: the
partitions of all its datasets on that date.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from ..commit import MANIFEST, REJECTS
from ..storage import Storage, join

log = logging.getLogger("exporter.report")

INCREMENTAL = "_incremental"


@dataclass(frozen=True)
class Partition:
    source: str
    folder: str  # the dataset's folder: "balances", "trades_incremental"
    date: str
    key: str  # the partition's storage key (no trailing slash)
    manifest: dict[str, Any]
    has_rejects: bool = False

    @property
    def entry(self) -> dict[str, Any]:
        """This dataset's entry of the manifest (incremental folders are named after their dataset)."""
        datasets = self.manifest.get("datasets") or {}
        return datasets.get(self.folder) or datasets.get(self.folder.removesuffix(INCREMENTAL)) or {}

    @property
    def rows(self) -> int:
        return int(self.entry.get("rows") or 0)

    def files(self) -> list[str]:
        """Storage keys of the partition's Parquet files, as its manifest lists them."""
        names = [f.get("name", "") for f in self.entry.get("files", [])]
        return [join(self.key, name) for name in names if name.endswith(".parquet")]


@dataclass
class Snapshot:
    source: str
    date: str
    partitions: dict[str, list[Partition]] = field(default_factory=dict)  # folder -> partitions (runs)

    def rows(self, folder: str) -> int | None:
        parts = self.partitions.get(folder)
        return None if parts is None else sum(p.rows for p in parts)

    def files(self, folder: str) -> list[str]:
        return [key for p in self.partitions.get(folder, []) for key in p.files()]

    def manifests(self) -> list[dict[str, Any]]:
        """One manifest per run that published into this snapshot, oldest run first."""
        runs: dict[str, dict[str, Any]] = {}
        for parts in self.partitions.values():
            for p in parts:
                runs.setdefault(str(p.manifest.get("run_id", "")), p.manifest)
        return [runs[r] for r in sorted(runs)]


def find_snapshots(storage: Storage) -> dict[str, list[Snapshot]]:
    """Every published snapshot, per source, oldest date first."""
    objects = storage.list("")
    keys = {o.key for o in objects}
    by_source: dict[str, dict[str, Snapshot]] = {}
    for key in sorted(keys):
        if not key.endswith("/" + MANIFEST) or key.startswith("_"):
            continue
        partition = _partition(storage, key, keys)
        if partition is None:
            continue
        snapshots = by_source.setdefault(partition.source, {})
        snapshot = snapshots.setdefault(partition.date, Snapshot(partition.source, partition.date))
        snapshot.partitions.setdefault(partition.folder, []).append(partition)
    return {source: [dates[d] for d in sorted(dates)] for source, dates in sorted(by_source.items())}


def _partition(storage: Storage, key: str, keys: set[str]) -> Partition | None:
    segments = key.split("/")[:-1]
    if len(segments) not in (3, 4) or not segments[2].startswith("snapshot_date="):
        return None
    if len(segments) == 4 and not segments[3].startswith("run_id="):
        return None
    raw = storage.read(key)
    try:
        manifest = json.loads(raw or b"")
    except ValueError:
        log.warning("skipping %s: not a JSON manifest", storage.describe(key))
        return None
    if not isinstance(manifest, dict):
        return None
    folder = "/".join(segments)
    return Partition(
        source=segments[0], folder=segments[1], date=segments[2].split("=", 1)[1], key=folder,
        manifest=manifest, has_rejects=join(folder, REJECTS) in keys,
    )
