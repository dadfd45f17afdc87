"""Table output (Delta Lake, Apache Iceberg): the commit protocol's *apply* step for tables.

The sink stages Parquet part files exactly as for Parquet output (``_staging/`` on a local folder,
pending multipart uploads at their final keys on S3). What changes is how they are published:
instead of swapping a partition folder, each dataset's files are *registered* in its table, in one
commit per table that replaces the run's partition (``snapshot_date = D``; incremental tables:
``snapshot_date = D, run_id = R``, a partition of their own):

* Delta: ``create_write_transaction(mode="overwrite", partition_filters=...)`` with one add action
  per part file (the first run: ``create_table_with_add_actions``). The commit info carries the run
  id, and an app transaction (``txn``) per job makes the commit idempotent.
* Iceberg: one transaction per table: ``union_by_name`` of the schema (evolve), then one OVERWRITE
  snapshot that deletes the partition's files and adds ours (read from their footers), the run id
  in the snapshot summary.

No row is read back or rewritten: a table commit costs a footer read per file and the commit
itself. The files are named with the run id, so a new version never overwrites a file an older one
(time travel) still lists.

Exactly once across tables: the journal (``commit.json``) lists, per dataset, the version or
snapshot its table reached, rewritten after each table commit. A rerun after a crash skips the
tables the journal lists, finds the run id in the history of a table committed just before the
crash, and commits the others. Documents (``_manifest.json`` with every table's version,
``_cursor.json``, ``_rejects.jsonl``) are written into the partition folder once every table is
committed.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .errors import CommitError, ExporterError, JobFileError, TableError
from .storage import Storage, join

if TYPE_CHECKING:
    from .commit import Committer, PartitionPlan
    from .jobs import JobSpec

log = logging.getLogger("exporter.tables")

TABLE_FORMATS = ("delta", "iceberg")
RUN_ID_KEY = "brokerexport.run_id"  # Delta commit info / Iceberg snapshot summary
HISTORY_SCAN = 1000  # Delta: how many of the newest commits are searched for a run's commit
DEFAULT_CATALOG = "brokerexport"
MANIFEST = "_manifest.json"
CURSOR = "_cursor.json"
REJECTS = "_rejects.jsonl"


def encode_schema(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


def decode_schema(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def table_spec(root: str, namespace: str, name: str, partition: dict[str, str], schema: pa.Schema) -> dict[str, Any]:
    """What the journal keeps of a dataset's table (``PartitionPlan.table``)."""
    return {"root": root, "namespace": namespace, "name": name, "partition": partition,
            "schema": encode_schema(schema)}


def partition_columns(partition: Mapping[str, str]) -> dict[str, pa.Scalar]:
    """The partition columns as Arrow values: ``snapshot_date`` a date, ``run_id`` a string."""
    return {k: pa.scalar(date.fromisoformat(v), pa.date32()) if k == "snapshot_date" else pa.scalar(v, pa.string())
            for k, v in partition.items()}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class TableBackend(ABC):
    """One table format on one storage. ``reached`` maps dataset keys to what the commit produced."""

    format: str

    def __init__(self, storage: Storage, job: JobSpec, env: Mapping[str, str]) -> None:
        self.storage = storage
        self.job = job
        self.env = env
        self.reached: dict[str, dict[str, Any]] = {}

    # ---- where a table lives

    def uri(self, key: str) -> str:
        if self.storage.kind == "local":
            return str(Path(self.storage.path(key)).resolve())  # type: ignore[attr-defined]
        s3: Any = self.storage
        return f"s3://{s3.bucket}/{s3.full(key)}"

    def s3_settings(self) -> dict[str, str]:
        """The S3 storage's endpoint, region and (when set in the environment) credentials; what is
        not set here each library finds the way boto3 does (profiles, instance roles)."""
        s3: Any = self.storage
        settings = {"region": s3.client.meta.region_name or "us-east-1"}
        if s3.endpoint:
            settings["endpoint"] = s3.endpoint
        for name, env in (("key", "AWS_ACCESS_KEY_ID"), ("secret", "AWS_SECRET_ACCESS_KEY"),
                          ("token", "AWS_SESSION_TOKEN")):
            if self.env.get(env):
                settings[name] = self.env[env]
        return settings

    # ---- what a format decides

    def file_columns(self, partition: Mapping[str, str]) -> dict[str, pa.Scalar]:
        """Columns the staged files must hold besides the data (none: the table holds them)."""
        return {}

    @abstractmethod
    def check(self) -> None:
        """Reach the catalog (fail before fetching anything)."""

    @abstractmethod
    def validate(self, table: dict[str, Any]) -> None:
        """Raise if the table exists with a schema or partitioning ours conflicts with."""

    @abstractmethod
    def committed(self, table: dict[str, Any], run_id: str, txn: int) -> dict[str, Any] | None:
        """What this run's commit of the table produced, or None if it has not committed it."""

    @abstractmethod
    def commit(self, table: dict[str, Any], files: list[dict[str, Any]], run_id: str, txn: int) -> dict[str, Any]:
        """Replace the run's partition with ``files`` (key, bytes, rows) in one commit."""

    # ---- the commit protocol's steps for tables

    def validate_all(self, plans: list[PartitionPlan]) -> None:
        for plan in plans:
            assert plan.table is not None
            try:
                self.validate(plan.table)
            except ExporterError:
                raise
            except Exception as exc:
                raise TableError(f"{self.format} table {self.describe(plan.table)}: {_one_line(exc)}; "
                                 "nothing was committed") from None

    def describe(self, table: dict[str, Any]) -> str:
        return self.storage.describe(table["root"])

    def apply(self, committer: Committer, journal: dict[str, Any]) -> None:
        from .commit import PartitionPlan

        run_id = journal["run_id"]
        txn = _txn_version(journal["summary"]["started_at"])
        plans = [PartitionPlan(**p) for p in journal["partitions"]]
        done: dict[str, dict[str, Any]] = journal.setdefault("tables", {})
        for plan in plans:  # 1. every file at its final key (invisible: no table lists it yet)
            self._place(plan)
        for count, plan in enumerate(plans):  # 2. one commit per table, each recorded in the journal
            if plan.dataset in done:
                continue
            assert plan.table is not None
            files = [{"key": join(plan.target, p["name"]), "bytes": p["bytes"], "rows": p["rows"]}
                     for p in plan.parts if p["rows"] > 0]  # a row-less file adds nothing to a table
            try:
                reached = self.committed(plan.table, run_id, txn)
                if reached is None:
                    reached = self.commit(plan.table, files, run_id, txn)
                    log.info("%s: %s table %s committed (%s)", plan.dataset, self.format,
                             self.describe(plan.table), _reached_text(reached))
            except ExporterError:
                raise
            except Exception as exc:
                raise TableError(
                    f"{self.format} table {self.describe(plan.table)}: commit failed ({_one_line(exc)}); "
                    f"{count} of {len(plans)} tables of run {run_id} are committed, the rest are not: "
                    "rerun to commit them (none is committed twice)"
                ) from None
            done[plan.dataset] = reached
            committer.storage.write_atomic(committer.journal_key, json.dumps(journal, default=str).encode())
        self.reached = dict(done)
        for plan in plans:  # 3. documents, the manifest naming every table's version
            self._documents(plan, done)

    def _place(self, plan: PartitionPlan) -> None:
        storage: Any = self.storage
        names = [p["name"] for p in plan.parts] + ([REJECTS] if plan.rejects else [])
        if self.storage.kind != "local":
            for part in plan.parts:
                storage.complete_upload(join(plan.target, part["name"]), part["upload"])
            if plan.rejects_upload:
                storage.complete_upload(join(plan.target, REJECTS), plan.rejects_upload)
            return
        sizes = {p["name"]: p["bytes"] for p in plan.parts}
        for name in names:
            source, target = storage.path(join(plan.staged, name)), storage.path(join(plan.target, name))
            if source.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)
                _fsync_dir(target.parent)
            elif not target.exists() or (name in sizes and target.stat().st_size != sizes[name]):
                raise CommitError(f"cannot publish {plan.target}: {name} is neither staged "
                                  f"({self.storage.describe(plan.staged)}) nor in place; nothing more was published")

    def _documents(self, plan: PartitionPlan, done: dict[str, dict[str, Any]]) -> None:
        if not plan.rejects:
            self.storage.delete([join(plan.target, REJECTS)])  # an earlier run's, for the replaced partition
        for name in (CURSOR, MANIFEST):
            if name not in plan.documents:
                continue
            document = plan.documents[name]
            if name == MANIFEST:
                source = document.get("source", plan.dataset.split("/", 1)[0])
                document = document | {"datasets": {
                    dataset: entry | ({"table": done[f"{source}/{dataset}"]} if f"{source}/{dataset}" in done else {})
                    for dataset, entry in document.get("datasets", {}).items()
                }}
            self.storage.write_atomic(join(plan.target, name), json.dumps(document, indent=2, default=str).encode())


def _txn_version(started_at: str) -> int:
    """The run's start in microseconds: a Delta app transaction version (a long) unique per run."""
    moment = datetime.fromisoformat(started_at)
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def _reached_text(reached: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in reached.items() if k in ("version", "snapshot_id"))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- Delta Lake


class DeltaTables(TableBackend):
    format = "delta"

    def __init__(self, storage: Storage, job: JobSpec, env: Mapping[str, str]) -> None:
        super().__init__(storage, job, env)
        try:
            import deltalake  # noqa: F401
        except ImportError:
            raise JobFileError(f"{job.path}: format = \"delta\" needs the delta extra: "
                               "pip install 'brokerexport[delta]'") from None
        self.app_id = f"brokerexport:{job.name}"

    def storage_options(self) -> dict[str, str] | None:
        if self.storage.kind == "local":
            return None
        s3 = self.s3_settings()
        options = {"AWS_REGION": s3["region"]}
        if "endpoint" in s3:
            options["AWS_ENDPOINT_URL"] = s3["endpoint"]
            if s3["endpoint"].startswith("http://"):
                options["AWS_ALLOW_HTTP"] = "true"
        for name, option in (("key", "AWS_ACCESS_KEY_ID"), ("secret", "AWS_SECRET_ACCESS_KEY"),
                             ("token", "AWS_SESSION_TOKEN")):
            if name in s3:
                options[option] = s3[name]
        if not self.env.get("AWS_S3_LOCKING_PROVIDER"):
            options["AWS_CONDITIONAL_PUT"] = "etag"  # atomic log commits with If-None-Match, no lock table
        return options

    def check(self) -> None:
        return None  # no catalog: the storage check covers it

    def _open(self, table: dict[str, Any]) -> Any:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:  # (not DeltaTable.is_deltatable: it never returns against some S3-compatible servers)
            return DeltaTable(self.uri(table["root"]), storage_options=self.storage_options())
        except TableNotFoundError:
            return None

    def _schema(self, table: dict[str, Any], existing: Any) -> Any:
        """Ours (data columns, then the partition columns) united by name with the table's:
        its columns in its order, then the ones it lacks. A column whose type differs is an error."""
        from deltalake import Field, Schema

        ours = decode_schema(table["schema"])
        for name, value in partition_columns(table["partition"]).items():
            if ours.get_field_index(name) < 0:
                ours = ours.append(pa.field(name, value.type))
        mine = Schema.from_arrow(ours).fields
        if existing is None:
            return Schema(mine)
        theirs = existing.schema().fields
        known = {f.name: f for f in theirs}
        for field in mine:
            if field.name in known and repr(known[field.name].type) != repr(field.type):
                raise TableError(f"delta table {self.describe(table)}: column {field.name!r} is "
                                 f"{_delta_type(known[field.name])} in the table, {_delta_type(field)} in this "
                                 "run; nothing was committed")
        added = [Field(f.name, f.type, nullable=True) for f in mine if f.name not in known]
        return Schema(list(theirs) + added)

    def validate(self, table: dict[str, Any]) -> None:
        existing = self._open(table)
        if existing is None:
            return
        columns = list(existing.metadata().partition_columns)
        if columns != list(table["partition"]):
            raise TableError(f"delta table {self.describe(table)} is partitioned by {columns or 'nothing'}, "
                             f"this run writes partitions by {list(table['partition'])}; nothing was committed")
        self._schema(table, existing)

    def committed(self, table: dict[str, Any], run_id: str, txn: int) -> dict[str, Any] | None:
        existing = self._open(table)
        if existing is None or existing.transaction_version(self.app_id) != txn:
            return None
        # the app transaction says a run that started at our start time committed; the run id in
        # the commit info says whether it was this one, and which version it made. The log's
        # commit files are read through the storage seam, newest first (DeltaTable.history() never
        # returns against some S3-compatible servers)
        latest = existing.version()
        for version in range(latest, max(-1, latest - HISTORY_SCAN), -1):
            raw = self.storage.read(join(table["root"], "_delta_log", f"{version:020d}.json"))
            if raw is None:
                break  # older commits are in a checkpoint only
            for line in raw.splitlines():
                info = json.loads(line).get("commitInfo") if line.strip() else None
                if info is not None and info.get(RUN_ID_KEY) == run_id:
                    return {"format": "delta", "uri": self.uri(table["root"]), "version": version}
        return None

    def commit(self, table: dict[str, Any], files: list[dict[str, Any]], run_id: str, txn: int) -> dict[str, Any]:
        from deltalake import CommitProperties
        from deltalake.transaction import AddAction, Transaction, create_table_with_add_actions

        root, partition = table["root"], table["partition"]
        now = int(time.time() * 1000)
        actions = [AddAction(path=f["key"][len(root) + 1:], size=int(f["bytes"]), partition_values=dict(partition),
                             modification_time=now, data_change=True, stats=json.dumps({"numRecords": f["rows"]}))
                   for f in files]
        properties = CommitProperties(custom_metadata={RUN_ID_KEY: run_id},
                                      app_transactions=[Transaction(self.app_id, txn)], max_commit_retries=15)
        existing = self._open(table)
        uri = self.uri(root)
        if existing is None:
            try:
                create_table_with_add_actions(uri, self._schema(table, None), actions, mode="error",
                                              partition_by=list(partition), storage_options=self.storage_options(),
                                              commit_properties=properties)
            except Exception as exc:
                existing = self._open(table)  # another writer created it meanwhile: commit into it
                if existing is None:
                    raise
                log.info("delta table %s was created meanwhile (%s)", uri, _one_line(exc))
        if existing is not None:
            existing.create_write_transaction(
                actions, "overwrite", self._schema(table, existing), partition_by=list(partition),
                partition_filters=[(k, "=", v) for k, v in partition.items()], commit_properties=properties)
        found = self.committed(table, run_id, txn)
        if found is None:
            raise TableError(f"delta table {self.describe(table)}: the commit of run {run_id} is not in its log")
        return found


def _delta_type(field: Any) -> str:
    text = repr(field.type)
    return text.split('"')[1] if '"' in text else text


# --------------------------------------------------------------------------- Apache Iceberg


class IcebergTables(TableBackend):
    format = "iceberg"

    def __init__(self, storage: Storage, job: JobSpec, env: Mapping[str, str]) -> None:
        super().__init__(storage, job, env)
        try:
            import pyiceberg  # noqa: F401
        except ImportError:
            raise JobFileError(f"{job.path}: format = \"iceberg\" needs the iceberg extra: "
                               "pip install 'brokerexport[iceberg]'") from None
        properties = dict(job.iceberg)
        self.name = properties.pop("name", DEFAULT_CATALOG)
        if not properties and not _configured_elsewhere(self.name):
            if storage.kind != "local":
                raise JobFileError(
                    f"{job.path}: key 'iceberg': s3:// output needs an Iceberg catalog (a REST, Glue or SQL "
                    "catalog's properties in the [iceberg] table, e.g. type = \"rest\", uri = \"...\"); the "
                    "default SQLite catalog is for a local output folder only"
                )
            where = Path(storage.path("_iceberg")).resolve()  # type: ignore[attr-defined]
            properties = {"type": "sql", "uri": f"sqlite:///{where}/catalog.db", "warehouse": f"file://{where}"}
            self.default_catalog: Path | None = where
        else:
            self.default_catalog = None
        if storage.kind != "local":
            s3 = self.s3_settings()
            for prop, name in (("s3.region", "region"), ("s3.endpoint", "endpoint"), ("s3.access-key-id", "key"),
                               ("s3.secret-access-key", "secret"), ("s3.session-token", "token")):
                if name in s3:
                    properties.setdefault(prop, s3[name])
        self.properties = properties
        # values that must never appear in a message (a catalog's credential, a DSN's password)
        self._secrets = [v for k, v in properties.items()
                         if any(w in k.lower() for w in ("secret", "token", "credential", "password", "key-id"))]
        self._catalog: Any = None

    def describe(self, table: dict[str, Any]) -> str:
        return f"{table['namespace']}.{table['name']} (catalog {self.name!r})"

    def file_columns(self, partition: Mapping[str, str]) -> dict[str, pa.Scalar]:
        # Iceberg data files hold every column; adding a file reads its partition from its statistics
        return partition_columns(partition)

    def catalog(self) -> Any:
        if self._catalog is None:
            from pyiceberg.catalog import load_catalog

            if self.default_catalog is not None:
                self.default_catalog.mkdir(parents=True, exist_ok=True)
            try:
                self._catalog = load_catalog(self.name, **self.properties)
            except Exception as exc:
                raise TableError(f"iceberg catalog {self.name!r} unreachable: {self._scrub(_one_line(exc))}") from None
        return self._catalog

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def check(self) -> None:
        try:
            self.catalog().list_namespaces()
        except TableError:
            raise
        except Exception as exc:
            raise TableError(f"iceberg catalog {self.name!r} unreachable: {self._scrub(_one_line(exc))}") from None

    def _load(self, table: dict[str, Any]) -> Any:
        from pyiceberg.exceptions import NoSuchTableError

        try:
            return self.catalog().load_table((table["namespace"], table["name"]))
        except NoSuchTableError:
            return None

    def validate(self, table: dict[str, Any]) -> None:
        from pyiceberg.exceptions import ValidationError

        existing = self._load(table)
        if existing is None:
            return
        try:  # a transaction never committed: only the check
            existing.transaction().update_schema().union_by_name(decode_schema(table["schema"]))
        except (ValidationError, ValueError) as exc:
            raise TableError(f"iceberg table {self.describe(table)}: its schema conflicts with this run's "
                             f"({str(exc).strip()}); nothing was committed") from None

    def committed(self, table: dict[str, Any], run_id: str, txn: int) -> dict[str, Any] | None:
        existing = self._load(table)
        if existing is None:
            return None
        for snapshot in reversed(existing.snapshots()):
            if snapshot.summary is not None and snapshot.summary.get(RUN_ID_KEY) == run_id:
                return {"format": "iceberg", "catalog": self.name,
                        "identifier": f"{table['namespace']}.{table['name']}", "snapshot_id": snapshot.snapshot_id}
        return None

    def commit(self, table: dict[str, Any], files: list[dict[str, Any]], run_id: str, txn: int) -> dict[str, Any]:
        from pyiceberg.exceptions import NamespaceAlreadyExistsError, TableAlreadyExistsError
        from pyiceberg.expressions import And, EqualTo
        from pyiceberg.io import load_file_io
        from pyiceberg.io.pyarrow import parquet_file_to_data_file
        from pyiceberg.table import TableProperties

        catalog = self.catalog()
        identifier = (table["namespace"], table["name"])
        schema = decode_schema(table["schema"])
        existing = self._load(table)
        if existing is None:
            try:
                catalog.create_namespace(table["namespace"])
            except NamespaceAlreadyExistsError:
                pass
            transaction = catalog.create_table_transaction(identifier, schema=schema, location=self.uri(table["root"]))
            with transaction.update_spec() as spec:
                for column in table["partition"]:
                    spec.add_identity(column)
        else:
            transaction = existing.transaction()
            with transaction.update_schema() as update:  # evolve: new columns, in this same commit
                update.union_by_name(schema)
        metadata = transaction.table_metadata
        if metadata.name_mapping() is None:  # our files carry no field ids: columns are found by name
            transaction.set_properties(
                **{TableProperties.DEFAULT_NAME_MAPPING: metadata.schema().name_mapping.model_dump_json()})
        condition: Any = None
        for column, value in table["partition"].items():
            term = EqualTo(column, value)
            condition = term if condition is None else And(condition, term)
        replaced = []
        if existing is not None and transaction.table_metadata.current_snapshot_id is not None:
            replaced = [task.file for task in existing.scan(row_filter=condition).plan_files()]
        io = load_file_io(self.properties, self.uri(table["root"]))
        added = [parquet_file_to_data_file(io, transaction.table_metadata, self.uri(f["key"])) for f in files]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with transaction.update_snapshot(snapshot_properties={RUN_ID_KEY: run_id}).overwrite() as overwrite:
                overwrite.delete_by_predicate(condition)
                for data_file in replaced:
                    overwrite.delete_data_file(data_file)
                for data_file in added:
                    overwrite.append_data_file(data_file)
            try:
                transaction.commit_transaction()
            except TableAlreadyExistsError:
                raise TableError(f"iceberg table {self.describe(table)} was created by another writer meanwhile; "
                                 "rerun to commit into it") from None
        found = self.committed(table, run_id, txn)
        if found is None:
            raise TableError(f"iceberg table {self.describe(table)}: the snapshot of run {run_id} is not in it")
        return found


def _configured_elsewhere(name: str) -> bool:
    """A catalog of this name set up in ``.pyiceberg.yaml`` or ``PYICEBERG_CATALOG__<NAME>__...``."""
    try:
        from pyiceberg.utils.config import Config

        return bool(Config().get_catalog_config(name))
    except Exception:
        return False


def open_tables(storage: Storage, job: JobSpec, env: Mapping[str, str], output_format: str) -> TableBackend | None:
    if output_format == "delta":
        return DeltaTables(storage, job, env)
    if output_format == "iceberg":
        return IcebergTables(storage, job, env)
    return None
