"""The resumable state of a run, kept in its staging area and rewritten after each durable part.

    {"version": 1, "job": "nightly", "fingerprint": "…", "run_id": "…", "snapshot_date": "…",
     "started_at": "…",
     "streams": {"tradesync/accounts": {"walk": {...walk state...}, "done": false}},
     "datasets": {"tradesync/balances": {"parts": [{"name", "rows", "bytes"}], "rejects_bytes": 0,
                                         "unknown_fields": {}, ...}}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CheckpointError
from .fsutil import read_json, write_json_atomic
from .names import name_problem, shown

VERSION = 1
FILE_NAME = "checkpoint.json"


@dataclass
class Checkpoint:
    path: Path
    job: str
    fingerprint: str
    run_id: str
    snapshot_date: str
    started_at: str
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    resumed: int = 0

    def save(self) -> None:
        write_json_atomic(
            self.path,
            {
                "version": VERSION,
                "job": self.job,
                "fingerprint": self.fingerprint,
                "run_id": self.run_id,
                "snapshot_date": self.snapshot_date,
                "started_at": self.started_at,
                "resumed": self.resumed,
                "streams": self.streams,
                "datasets": self.datasets,
            },
        )

    @classmethod
    def load(cls, path: Path, *, job: str, fingerprint: str) -> Checkpoint:
        try:
            raw = read_json(path)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {path} is unreadable ({exc}); rerun with --fresh") from None
        if not isinstance(raw, dict) or raw.get("version") != VERSION:
            raise CheckpointError(f"checkpoint {path} has an unknown format; rerun with --fresh")
        if raw.get("fingerprint") != fingerprint or raw.get("job") != job:
            raise CheckpointError(
                f"checkpoint {path} was written by a different definition of job {raw.get('job')!r} "
                "(datasets, page size, options or schema mode changed); it cannot be resumed safely. "
                "Rerun with --fresh to discard it"
            )
        for key in ("run_id", "snapshot_date"):  # folder names of the staged partitions
            problem = name_problem(raw.get(key))
            if problem is not None:
                raise CheckpointError(
                    f"checkpoint {path}: {key} {shown(raw.get(key))} is not a valid name ({problem}); "
                    "rerun with --fresh"
                )
        return cls(
            path=path,
            job=raw["job"],
            fingerprint=raw["fingerprint"],
            run_id=raw["run_id"],
            snapshot_date=raw["snapshot_date"],
            started_at=raw["started_at"],
            streams=raw.get("streams", {}),
            datasets=raw.get("datasets", {}),
            resumed=int(raw.get("resumed", 0)) + 1,
        )


def merge_progress(state: dict[str, Any], progress: dict[str, Any]) -> None:
    """Apply a page's progress to a walk state: nested dicts are merged, other values replaced.

    >>> state = {"ranges": {"0": {"cursor": 5, "done": False}}, "pages": 1}
    >>> merge_progress(state, {"ranges": {"0": {"cursor": 9}}, "pages": 2})
    >>> state
    {'ranges': {'0': {'cursor': 9, 'done': False}}, 'pages': 2}
    """
    for key, value in progress.items():
        if isinstance(value, dict) and isinstance(state.get(key), dict):
            merge_progress(state[key], value)
        else:
            state[key] = value
