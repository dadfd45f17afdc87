"""The commit protocol: how a run's staged output becomes the published snapshot, exactly once.

Every output goes through the same four steps (the model: Hadoop's S3A committers and Delta's log):

1. **prepare**: every dataset is staged and durable (the runner's streams are done); the small
   files each partition will hold (``_rejects.jsonl``, ``_cursor.json``, ``_manifest.json``) are
   staged too.
2. **commit record**: ``_staging/<job>/commit.json`` lists every partition (where it is staged,
   where it goes, which files it will hold) and is written atomically *before the first visible
   change*.
3. **apply**: idempotent steps. A run that finds a commit record rolls it forward before anything
   else, so a crash at any point of the publish ends, at the next run, in the complete snapshot. A
   step never publishes a staged partition that lacks a file the record lists.
4. **clean up**: checkpoint first, staged data next, the commit record last.

Backends differ only in *apply*:

* local folder: each staged partition folder is swapped with the published one
  (``renameat2(RENAME_EXCHANGE)``): a reader sees the old partition or the new one. Done = the
  published partition's manifest names this run.
* object storage: part files are multipart uploads pending at their final keys since the walk;
  apply completes them, then writes each ``_manifest.json`` (one PUT: manifest readers switch
  from the old snapshot to the new one at once), then deletes what the new manifest does not list.
* Delta or Iceberg tables (either storage): the files are put at their final keys, then each
  dataset's table gets one commit, recorded in the commit record as it lands
  (:mod:`exporter.tables`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .checkpoint import FILE_NAME
from .errors import CommitError
from .storage import STAGING, Storage, basename, join

if TYPE_CHECKING:
    from .tables import TableBackend

log = logging.getLogger("exporter.commit")

JOURNAL = "commit.json"
MANIFEST = "_manifest.json"
CURSOR = "_cursor.json"
REJECTS = "_rejects.jsonl"
VERSION = 1


@dataclass
class PartitionPlan:
    """One partition to publish: where it is staged, where it goes, what it will hold."""

    dataset: str  # "tradesync/accounts"
    target: str  # "tradesync/accounts/snapshot_date=2026-12-01"
    staged: str  # local: under _staging/; object storage: the target itself (pending uploads)
    parts: list[dict[str, Any]]  # name, rows, bytes (+ upload state on object storage)
    rejects: list[str] = field(default_factory=list)  # rejects segments (keys under _staging/)
    documents: dict[str, Any] = field(default_factory=dict)  # _cursor.json, _manifest.json
    rejects_upload: dict[str, Any] | None = None  # object storage: the pending _rejects.jsonl
    table: dict[str, Any] | None = None  # table output: the dataset's table (exporter.tables.table_spec)

    def files(self) -> set[str]:
        names = {p["name"] for p in self.parts} | set(self.documents)
        return names | ({REJECTS} if self.rejects else set())


class Committer:
    """The commit protocol for one job's output on one storage."""

    def __init__(self, storage: Storage, job: str, tables: TableBackend | None = None) -> None:
        self.storage = storage
        self.tables = tables
        self.root = join(STAGING, job)
        self.journal_key = join(self.root, JOURNAL)
        self.checkpoint_key = join(self.root, FILE_NAME)
        self.in_place = storage.kind != "local"  # object storage stages at the final keys

    # ---- where a run stages its output

    def run_prefix(self, run_id: str) -> str:
        return join(self.root, run_id)

    def staged_partition(self, run_id: str, target: str) -> str:
        return target if self.in_place else join(self.run_prefix(run_id), target)

    def part_tag(self, run_id: str) -> str:
        """Object storage and tables: part names carry the run, so a rerun never overwrites a listed
        file (nor one an older table version lists)."""
        return run_id if self.in_place or self.tables is not None else ""

    def spool_partition(self, run_id: str, target: str) -> str:
        """Where part files holding staged drift columns wait until their types are settled."""
        return join(self.run_prefix(run_id), "_spool", target)

    def rejects_prefix(self, run_id: str, dataset: str) -> str:
        return join(self.run_prefix(run_id), "_rejects", dataset)

    # ---- the protocol

    def commit(self, run_id: str, plans: list[PartitionPlan], summary: dict[str, Any],
               before_visible: Callable[[], None] = lambda: None) -> None:
        for plan in plans:
            self._prepare(plan)
        if self.tables is not None:
            self.tables.validate_all(plans)  # a conflicting table fails the run before any table commit
        before_visible()  # the lease is renewed (and checked) right before the first visible change
        journal = {"version": VERSION, "run_id": run_id, "partitions": [asdict(p) for p in plans],
                   "summary": summary, "format": self.tables.format if self.tables is not None else "parquet"}
        self.storage.write_atomic(self.journal_key, json.dumps(journal, default=str).encode())
        self._apply(journal)
        self._cleanup(run_id)

    def recover(self) -> dict[str, Any] | None:
        """Roll forward a commit a crash interrupted; the commit record, or None if there was none."""
        raw = self.storage.read(self.journal_key)
        if raw is None:
            return None
        try:
            journal = json.loads(raw)
            assert journal.get("version") == VERSION
        except (ValueError, AssertionError):
            raise CommitError(f"commit record {self.storage.describe(self.journal_key)} is unreadable; "
                              "it was written atomically, so the storage holds a foreign file there") from None
        log.warning("run %s was interrupted while publishing: completing its commit", journal["run_id"])
        self._apply(journal)
        self._cleanup(journal["run_id"])
        return journal

    def discard(self, checkpoint: dict[str, Any] | None) -> None:
        """Throw away a run that will not be resumed (``--fresh``): its staging and pending uploads."""
        if checkpoint and self.in_place:
            for state in checkpoint.get("datasets", {}).values():
                if state.get("partition"):
                    self.storage.prune_uploads(state["partition"], [], checkpoint.get("run_id", "?"))
        self.storage.delete([self.checkpoint_key])
        if checkpoint and checkpoint.get("run_id"):
            self.storage.remove_staging(self.run_prefix(checkpoint["run_id"]))
        self.storage.remove_staging(self.root)

    # ---- steps

    def _prepare(self, plan: PartitionPlan) -> None:
        if plan.rejects:
            rejects_key = join(plan.staged, REJECTS)
            if self.in_place:
                self.storage.prune_uploads(plan.staged, [], REJECTS)  # an earlier attempt's pending one
            upload = self.storage.open_upload(rejects_key)
            for segment in plan.rejects:
                data = self.storage.read(segment)
                if data is None:
                    raise CommitError(f"rejects segment {self.storage.describe(segment)} is missing")
                upload.write(data)
            state = upload.finish()
            plan.rejects_upload = state if self.in_place else None
        if not self.in_place and plan.table is None:  # tables: written once they are committed
            for name in (CURSOR, MANIFEST):  # the manifest last: it marks the partition complete
                if name in plan.documents:
                    self.storage.write_atomic(join(plan.staged, name), _encode(plan.documents[name]))

    def _apply(self, journal: dict[str, Any]) -> None:
        output_format = journal.get("format", "parquet")
        if output_format != "parquet":
            if self.tables is None or self.tables.format != output_format:
                raise CommitError(f"the interrupted run {journal['run_id']} publishes {output_format} tables: rerun "
                                  f"with format = \"{output_format}\" to complete its commit")
            self.tables.apply(self, journal)
            return
        plans = [PartitionPlan(**p) for p in journal["partitions"]]
        if self.in_place:
            self._apply_in_place(journal["run_id"], plans)
        else:
            for plan in plans:
                self._swap(journal["run_id"], plan)

    def _swap(self, run_id: str, plan: PartitionPlan) -> None:
        storage: Any = self.storage
        if _manifest_run(self.storage, plan.target) == run_id:
            if storage.is_dir(plan.staged):
                self.storage.remove_staging(plan.staged)  # the snapshot this run replaced
            return
        present = {basename(o.key): o.size for o in self.storage.list(plan.staged + "/")}
        missing = [p["name"] for p in plan.parts if present.get(p["name"]) != p["bytes"]]
        missing += [n for n in plan.files() if n not in present]
        if missing or _manifest_run(self.storage, plan.staged) != run_id:
            lacking = ", ".join(sorted(set(missing))) or "this run's manifest"
            raise CommitError(
                f"cannot publish {plan.target}: its staged partition {self.storage.describe(plan.staged)} lacks "
                f"{lacking}; nothing more was published"
            )
        storage.swap_in(plan.staged, plan.target)
        if storage.is_dir(plan.staged):
            self.storage.remove_staging(plan.staged)

    def _apply_in_place(self, run_id: str, plans: list[PartitionPlan]) -> None:
        storage: Any = self.storage
        for plan in plans:  # 1. every file of every partition exists, none is listed yet
            for part in plan.parts:
                storage.complete_upload(join(plan.target, part["name"]), part["upload"])
            if plan.rejects_upload:
                storage.complete_upload(join(plan.target, REJECTS), plan.rejects_upload)
        for plan in plans:  # 2. manifest readers switch to the new snapshot, partition by partition
            for name in (CURSOR, MANIFEST):
                if name in plan.documents:
                    self.storage.write_atomic(join(plan.target, name), _encode(plan.documents[name]))
        for plan in plans:  # 3. nothing is left that the new manifest does not list
            keep = plan.files()
            stale = [o.key for o in self.storage.list(plan.target + "/")
                     if "/" not in o.key[len(plan.target) + 1:] and basename(o.key) not in keep]
            self.storage.delete(stale)

    def _cleanup(self, run_id: str) -> None:
        self.storage.delete([self.checkpoint_key])
        self.storage.remove_staging(self.run_prefix(run_id))
        self.storage.delete([self.journal_key])  # last: until it is gone, a rerun rolls forward
        self.storage.remove_staging(self.root)  # the job's (now empty) staging folder


def _encode(value: Any) -> bytes:
    return json.dumps(value, indent=2, default=str).encode()


def _manifest_run(storage: Storage, partition: str) -> str | None:
    raw = storage.read(join(partition, MANIFEST))
    if raw is None:
        return None
    try:
        return json.loads(raw).get("run_id")
    except ValueError:
        return None
