"""The resumable state of a run, kept in its staging area and rewritten after each durable part.

    {"version": 2, "job": "nightly", "fingerprint": "…", "run_id": "…", "snapshot_date": "…",
     "started_at": "…",
     "streams": {"tradesync/accounts": {"walk": {...walk state...}, "done": false}},
     "datasets": {"tradesync/balances": {"parts": [{"name", "rows", "bytes"}], "rejects": [...],
                                         "unknown_fields": {}, ...}}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import CheckpointError
from .names import name_problem, shown
from .storage import Storage

VERSION = 2
FILE_NAME = "checkpoint.json"


@dataclass
class Checkpoint:
    storage: Storage
    key: str
    job: str
    fingerprint: str
    run_id: str
    snapshot_date: str
    started_at: str
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    resumed: int = 0

    def save(self) -> None:
        body = {
            "version": VERSION,
            "job": self.job,
            "fingerprint": self.fingerprint,
            "run_id": self.run_id,
            "snapshot_date": self.snapshot_date,
            "started_at": self.started_at,
            "resumed": self.resumed,
            "streams": self.streams,
            "datasets": self.datasets,
        }
        self.storage.write_atomic(self.key, json.dumps(body, indent=2, default=str).encode())

    @classmethod
    def load(cls, storage: Storage, key: str, *, job: str, fingerprint: str) -> Checkpoint | None:
        data = storage.read(key)
        if data is None:
            return None
        where = storage.describe(key)
        try:
            raw = json.loads(data)
        except ValueError as exc:
            raise CheckpointError(f"checkpoint {where} is unreadable ({exc}); rerun with --fresh") from None
        if not isinstance(raw, dict) or raw.get("version") != VERSION:
            raise CheckpointError(f"checkpoint {where} has an unknown format; rerun with --fresh")
        if raw.get("fingerprint") != fingerprint or raw.get("job") != job:
            raise CheckpointError(
                f"checkpoint {where} was written by a different definition of job {raw.get('job')!r} "
                "(datasets, page size, options or schema mode changed); it cannot be resumed safely. "
                "Rerun with --fresh to discard it"
            )
        for name in ("run_id", "snapshot_date"):  # folder names of the staged partitions
            problem = name_problem(raw.get(name))
            if problem is not None:
                raise CheckpointError(
                    f"checkpoint {where}: {name} {shown(raw.get(name))} is not a valid name ({problem}); "
                    "rerun with --fresh"
                )
        return cls(
            storage=storage,
            key=key,
            job=raw["job"],
            fingerprint=raw["fingerprint"],
            run_id=raw["run_id"],
            snapshot_date=raw["snapshot_date"],
            started_at=raw["started_at"],
            streams=raw.get("streams", {}),
            datasets=raw.get("datasets", {}),
            resumed=int(raw.get("resumed", 0)) + 1,
        )


class Replace(dict):  # type: ignore[type-arg]
    """A progress value that replaces what the state holds instead of merging into it (a walk
    moving on to its next batch drops the finished one's entries; plain merges only add keys).
    Later deltas merge into it as usual, so it survives :func:`~exporter.walk.combine`."""


def merge_progress(state: dict[str, Any], progress: dict[str, Any]) -> None:
    """Apply a page's progress to a walk state: nested dicts are merged, other values replaced.

    >>> state = {"ranges": {"0": {"cursor": 5, "done": False}}, "pages": 1}
    >>> merge_progress(state, {"ranges": {"0": {"cursor": 9}}, "pages": 2})
    >>> state
    {'ranges': {'0': {'cursor': 9, 'done': False}}, 'pages': 2}
    """
    for key, value in progress.items():
        if isinstance(value, Replace):
            state[key] = Replace(value)
        elif isinstance(value, dict) and isinstance(state.get(key), dict):
            merge_progress(state[key], value)
        else:
            state[key] = value
