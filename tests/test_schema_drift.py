"""Schema drift over real loopback HTTP: the simulator changes the accounts of the upper half of the
id range (a field appears halfway through the collection, a field turns null, an integer field gets
decimals, a decimal field gets "N/A"), or gives every account fields of each JSON type, one of which
changes type halfway (``typed_fields``); ``schema_drift = "evolve"`` and ``"strict"`` behave as documented.

One walker (``parallel_walks = 1``) fetches the ids in order, so the drift appears halfway through
the write order too, and ``rows_per_file = 1000`` gives several part files on each side of it.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from exporter.errors import SchemaDriftError
from exporter.sandbox.tradesync import TradesyncSimConfig, tradesync_simulator
from exporter.sources.tradesync import ACCOUNT

from .chaos_helpers import command_error, manifest, partition, published_files, served_records
from .helpers import expected_value, make_job, run, tradesync_env

ACCOUNTS = 4000
DRIFTED_FROM = ACCOUNTS // 2  # the simulator drifts accounts from this index (in id order) on
SETTINGS = {"concurrency": 4, "page_size": 250, "parallel_walks": 1, "datasets": ["accounts", "balances", "equity"]}
BAD_VALUES = {"int_gets_decimals": ("open_trades", "int"), "decimal_na": ("balance", "decimal")}


def sim_config(drift: str | None) -> TradesyncSimConfig:
    return TradesyncSimConfig(accounts=ACCOUNTS, trades_per_account=0, rate_limit_rps=0, drift=drift)


def drift_job(schema_drift: str = "evolve") -> Any:
    return make_job({"tradesync": SETTINGS}, name="drift", rows_per_file=1000, schema_drift=schema_drift)


class Export:
    """One evolve export of a drifted simulator, with what the simulator served and expects."""

    def __init__(self, drift: str, output: Path) -> None:
        self.drift = drift
        self.output = output
        with tradesync_simulator(sim_config(drift)) as (url, simulator):
            self.result = run(drift_job(), output, tradesync_env(url))
            self.served = served_records(url, "/accounts")
            self.expected = list(simulator.expected_accounts())
        self.drifted_ids = {e["id"] for e in self.expected[DRIFTED_FROM:]}
        self.served_by_id = {r["id"]: r for r in self.served}

    @property
    def accounts_dir(self) -> Path:
        return partition(self.output, "accounts")

    def files(self) -> list[Path]:
        return sorted(self.accounts_dir.glob("part-*.parquet"))

    def accounts(self) -> pa.Table:
        """The accounts partition as one table, the way a user reads files of differing schemas."""
        schema = pa.unify_schemas([pq.read_schema(f) for f in self.files()])
        return ds.dataset(self.accounts_dir, format="parquet", schema=schema).to_table()

    def rejects(self, dataset: str = "accounts") -> list[dict[str, Any]]:
        path = partition(self.output, dataset) / "_rejects.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory):
    cache: dict[str, Export] = {}

    def get(drift: str) -> Export:
        if drift not in cache:
            cache[drift] = Export(drift, tmp_path_factory.mktemp(drift))
        return cache[drift]

    return get


def assert_exact_except(rows: list[dict[str, Any]], expected: list[dict[str, Any]], skip: str) -> None:
    """Every column of every row equals what the simulator serves, except column ``skip``."""
    schema = ACCOUNT.arrow_schema()
    assert [r["id"] for r in rows] == [e["id"] for e in expected]
    for row, exp in zip(rows, expected, strict=True):
        for f in schema:
            if f.name != skip:
                assert row[f.name] == expected_value(exp.get(f.name), f.type), (exp["id"], f.name)


# --------------------------------------------------------------------------- a field appears


def test_new_field_becomes_a_decimal_column_from_the_file_where_it_appears(exports) -> None:
    export = exports("new_field")
    files = export.files()
    with_column = ["risk_score" in pq.read_schema(f).names for f in files]
    # files without the column, then only files with it (the first page that brings the field closes
    # the file being written), several part files in all
    first = with_column.index(True)
    assert first >= 1 and not any(with_column[:first]) and all(with_column[first:]), with_column
    assert len(files) - first >= 2 and len(files) >= 4
    for path, has in zip(files, with_column, strict=True):
        table = pq.read_table(path)
        ids = set(table.column("id").to_pylist())
        if not has:
            assert not ids & export.drifted_ids, f"{path.name} holds drifted rows but no risk_score column"
            continue
        # served as 12.3 or 0: one decimal at most
        assert table.schema.field("risk_score").type == pa.decimal128(38, 1)
        for row_id, value in zip(table.column("id").to_pylist(), table.column("risk_score").to_pylist(), strict=True):
            served = export.served_by_id[row_id]
            assert value == served.get("risk_score") and (value is None) == ("risk_score" not in served), row_id

    # one table for a user: pyarrow over the unified file schemas, and DuckDB by column name
    table = export.accounts()
    assert table.num_rows == ACCOUNTS
    got = dict(zip(table.column("id").to_pylist(), table.column("risk_score").to_pylist(), strict=True))
    want = {i: (Decimal(r["risk_score"]) if "risk_score" in r else None) for i, r in export.served_by_id.items()}
    assert got == want
    assert sum(v is not None for v in got.values()) == ACCOUNTS - DRIFTED_FROM
    glob = str(export.output / "tradesync" / "accounts" / "**" / "*.parquet")
    rows = duckdb.sql(
        f"SELECT id, risk_score FROM read_parquet('{glob}', hive_partitioning=true, union_by_name=true)"
    ).fetchall()
    assert dict(rows) == want

    rows = sorted(table.select(ACCOUNT.arrow_schema().names).to_pylist(), key=lambda r: r["id"])
    assert_exact_except(rows, export.expected, skip="")
    meta = manifest(export.output, "accounts")["datasets"]["accounts"]
    assert meta["unknown_fields"] == {"risk_score": ACCOUNTS - DRIFTED_FROM}
    assert meta["drift_types"] == {"risk_score": "decimal128(38, 1)"} and meta["drift_fallbacks"] == {}
    for dataset in ("balances", "equity"):  # their projections do not carry the new field
        assert "risk_score" not in pq.read_schema(next(partition(export.output, dataset).glob("*.parquet"))).names
        assert manifest(export.output, dataset)["datasets"][dataset]["unknown_fields"] == {}
    assert {"name": "risk_score", "type": "decimal128(38, 1)"} in meta["schema"]
    assert meta["rejected_rows"] == 0


def test_strict_mode_fails_on_the_new_field_and_keeps_the_previous_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    job = drift_job("strict")
    with tradesync_simulator(sim_config(None)) as (url, _):
        run(job, tmp_path, tradesync_env(url))  # the previous snapshot, before the API changed
    before = published_files(tmp_path)
    assert before
    with tradesync_simulator(sim_config("new_field")) as (url, _):
        with pytest.raises(SchemaDriftError, match="risk_score"):
            run(job, tmp_path, tradesync_env(url))
        assert published_files(tmp_path) == before
        # the command line says so in one line and exits 1
        line = command_error(job, tmp_path, tradesync_env(url), 1, monkeypatch, capsys)
    assert "risk_score" in line and "strict" in line, line
    assert published_files(tmp_path) == before


# --------------------------------------------------------------------------- a field turns null


def test_a_field_turning_null_gives_nulls_and_no_rejects(exports) -> None:
    export = exports("null_field")
    table = export.accounts()
    assert table.schema.field("leverage").type == pa.int64()
    rows = sorted(table.to_pylist(), key=lambda r: r["id"])
    for row in rows:
        assert (row["leverage"] is None) == (row["id"] in export.drifted_ids), row["id"]
    assert_exact_except(rows, export.expected, skip="")  # the simulator expects None there too
    for dataset in ("accounts", "balances", "equity"):
        assert not (partition(export.output, dataset) / "_rejects.jsonl").exists()
        meta = manifest(export.output, dataset)["datasets"][dataset]
        assert meta["rejected_rows"] == 0 and meta["rejects_by_column"] == {} and meta["unknown_fields"] == {}


# --------------------------------------------------------------------------- unconvertible values


@pytest.mark.parametrize("drift", sorted(BAD_VALUES))
def test_unconvertible_values_become_null_and_their_records_are_kept_whole(exports, drift: str) -> None:
    export = exports(drift)
    column, kind = BAD_VALUES[drift]
    rows = sorted(export.accounts().to_pylist(), key=lambda r: r["id"])
    for row in rows:
        assert (row[column] is None) == (row["id"] in export.drifted_ids), row["id"]
    assert_exact_except(rows, export.expected, skip=column)

    rejects = export.rejects()
    assert sorted(r["record"]["id"] for r in rejects) == sorted(export.drifted_ids)  # each once
    for reject in rejects:
        served = export.served_by_id[reject["record"]["id"]]
        bad = served[column]
        assert list(reject["problems"]) == [column]
        reason = reject["problems"][column]
        assert reason.startswith(f"{kind}:") and str(bad) in reason, reason
        assert set(reject["record"]) == set(served) - {"password"}  # whole, less the credential
        assert str(reject["record"][column]) == str(bad)
        assert reject["fetched_at"]
    lines = (export.accounts_dir / "_rejects.jsonl").read_text().splitlines()
    assert not any("password" in line for line in lines)
    for line, reject in zip(lines, rejects, strict=True):  # a line holds one record: its own password
        assert export.served_by_id[reject["record"]["id"]]["password"] not in line
    meta = manifest(export.output, "accounts")["datasets"]["accounts"]
    assert meta["rejected_rows"] == len(export.drifted_ids)
    if drift == "decimal_na":  # the balances table carries the same column
        balances = {r["account_id"]: r["balance"] for r in
                    ds.dataset(partition(export.output, "balances"), format="parquet").to_table().to_pylist()}
        assert {i for i, b in balances.items() if b is None} == export.drifted_ids


@pytest.mark.parametrize("drift", sorted(BAD_VALUES))
def test_manifest_counts_rejects_per_column(exports, drift: str) -> None:
    export = exports(drift)
    column, _ = BAD_VALUES[drift]
    meta = manifest(export.output, "accounts")["datasets"]["accounts"]
    assert meta["rejects_by_column"] == {column: len(export.drifted_ids)}


@pytest.mark.parametrize("drift", sorted(BAD_VALUES))
def test_rejected_records_keep_the_served_json_values(exports, drift: str) -> None:
    export = exports(drift)
    path = export.accounts_dir / "_rejects.jsonl"
    for line in path.read_text().splitlines():
        record = json.loads(line, parse_float=Decimal)["record"]
        served = {k: v for k, v in export.served_by_id[record["id"]].items() if k != "password"}
        assert record == served, record["id"]


@pytest.mark.parametrize(("drift", "dataset"), [("int_gets_decimals", "balances"), ("decimal_na", "equity")])
def test_a_table_without_the_rejected_column_reports_no_rejects(exports, drift: str, dataset: str) -> None:
    export = exports(drift)
    column, _ = BAD_VALUES[drift]
    table = ds.dataset(partition(export.output, dataset), format="parquet").to_table()
    assert column not in table.column_names and table.num_rows == ACCOUNTS
    meta = manifest(export.output, dataset)["datasets"][dataset]
    assert meta["rejected_rows"] == 0
    assert not (partition(export.output, dataset) / "_rejects.jsonl").exists()


# --------------------------------------------------------------------------- fields of every JSON type

TYPED_FORMS = {
    "kyc_tier": "string",
    "margin_call_level": "decimal128(38, 3)",  # -2.5E-2 has 3 decimals, 12345678901234567890123456.12 26 digits
    "kyc_verified": "bool",
    "limits": "json",
    "kyc_level": "json",  # a number in the lower half of the ids, a string in the upper half
}


def json_text(value: Any) -> str:
    """A served value's JSON text, numbers with their digits as served (``Decimal`` keeps them)."""
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def drift_values(output: Path) -> tuple[dict[str, pa.DataType], dict[int, dict[str, Any]]]:
    """The typed columns of a published accounts partition: the one type each has in every part
    file holding it, and their values by account id."""
    files = sorted(partition(output, "accounts").glob("part-*.parquet"))
    types: dict[str, set[pa.DataType]] = {}
    for path in files:
        for f in pq.read_schema(path):
            if f.name in TYPED_FORMS:
                types.setdefault(f.name, set()).add(f.type)
    assert all(len(t) == 1 for t in types.values()), f"a column changed type between part files: {types}"
    schema = pa.unify_schemas([pq.read_schema(f) for f in files])
    table = ds.dataset(files, format="parquet", schema=schema).to_table(columns=["id", *TYPED_FORMS])
    rows = {r.pop("id"): r for r in table.to_pylist()}
    return {name: next(iter(t)) for name, t in types.items()}, rows


def test_each_json_type_keeps_its_natural_exact_form(exports) -> None:
    from exporter.drift import arrow_type
    from exporter.sandbox.tradesync import KYC_TIERS, SPECIAL_LEVELS

    export = exports("typed_fields")
    served = export.served_by_id
    # the simulator served what this test is about: every tricky string, every edge number
    assert {r["kyc_tier"] for r in served.values() if "kyc_tier" in r} == set(KYC_TIERS)
    levels = {r["margin_call_level"] for r in served.values()}
    assert {Decimal(t) for t in SPECIAL_LEVELS} <= levels
    assert "12345678901234567890123456.12" in {str(v) for v in levels}

    types, rows = drift_values(export.output)
    assert types == {name: arrow_type(form) for name, form in TYPED_FORMS.items()}
    assert len(rows) == ACCOUNTS
    for account_id, row in rows.items():
        record = served[account_id]
        assert row["kyc_tier"] == record.get("kyc_tier"), account_id  # unescaped, exactly as served
        assert row["margin_call_level"] == record["margin_call_level"], account_id  # the decimal of the text
        assert row["kyc_verified"] is record["kyc_verified"], account_id
        assert row["limits"] == json_text(record["limits"]), account_id
        assert row["kyc_level"] == json_text(record["kyc_level"]), account_id  # '3' or '"level-3"'

    meta = manifest(export.output, "accounts")["datasets"]["accounts"]
    assert meta["drift_types"] == TYPED_FORMS
    assert meta["drift_fallbacks"] == {"kyc_level": "values mix number, string"}
    assert {f["name"]: f["type"] for f in meta["schema"] if f["name"] in TYPED_FORMS} == {
        name: str(arrow_type(form)) for name, form in TYPED_FORMS.items()  # json is a string column
    }
    assert meta["unknown_fields"] == {
        name: sum(record.get(name) is not None for record in served.values()) for name in TYPED_FORMS
    }
    assert meta["rejected_rows"] == 0
    for dataset in ("balances", "equity"):  # their projections do not carry account fields they lack
        assert manifest(export.output, dataset)["datasets"][dataset]["drift_types"] == {}

    # what the issue asked for: the label matches without quotes, the number compares as a number
    glob = str(export.output / "tradesync" / "accounts" / "**" / "*.parquet")
    (tier_1, big), = duckdb.sql(
        f"SELECT count(*) FILTER (WHERE kyc_tier = 'tier-1'), count(*) FILTER (WHERE margin_call_level > 5000) "
        f"FROM read_parquet('{glob}', hive_partitioning=true, union_by_name=true)"
    ).fetchall()
    assert tier_1 == sum(r.get("kyc_tier") == "tier-1" for r in served.values()) > 0
    assert big == sum(r["margin_call_level"] > 5000 for r in served.values()) > 0


def test_a_field_whose_type_changes_midway_is_text_in_every_file(exports) -> None:
    export = exports("typed_fields")
    files = export.files()
    kinds = []  # per part file, in write order: did it hold numbers, strings?
    for path in files:
        table = pq.read_table(path, columns=["id", "kyc_level"])
        assert table.schema.field("kyc_level").type == pa.string()
        values = table.column("kyc_level").to_pylist()
        for row_id, value in zip(table.column("id").to_pylist(), values, strict=True):
            assert value == json_text(export.served_by_id[row_id]["kyc_level"]), row_id
        kinds.append({v[0] != '"' for v in values})
    # the first part files held only numbers: the later string values turned them to text as well
    assert kinds[0] == {True} and kinds[-1] == {False} and len(files) >= 4


@pytest.mark.parametrize("kill_point", ["write:7", "drift:2"])
def test_a_kill_then_resume_gives_the_forms_of_an_uninterrupted_run(exports, tmp_path: Path, kill_point: str) -> None:
    """``write:7``: killed mid-snapshot, part files with staged drift columns durable (in the spool);
    ``drift:2``: killed after every page was in, with two part files written in their final form and
    the others not yet."""
    from .chaos_helpers import exporter_env, logged_simulator, read_checkpoint, start_exporter, write_job

    reference = exports("typed_fields")
    job_file = write_job(tmp_path / "drift.toml", "drift", rows_per_file=1000, **SETTINGS)
    output = tmp_path / "out"
    with logged_simulator(sim_config("typed_fields")) as (url, _, _log):
        process = start_exporter(["run", str(job_file), "--output", str(output)], exporter_env(url),
                                 kill_point=kill_point)
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == -9, stderr[-3000:]
        assert published_files(output) == {}
        checkpoint = read_checkpoint(output, "drift")
        assert checkpoint is not None
        names = {p["name"] for p in checkpoint["datasets"].get("tradesync/accounts", {}).get("parts", [])}
        staged = [p for p in (output / "_staging" / "drift").rglob("accounts/*/part-*.parquet") if p.name in names]
        holding = [p for p in staged if "_spool" in p.parts and "kyc_tier" in pq.read_schema(p).names]
        final = [p for p in staged if "_spool" not in p.parts and "kyc_tier" in pq.read_schema(p).names]
        if kill_point.startswith("drift"):
            assert len(final) == 2 and len(holding) > 2, "the kill did not land half way through the rewrite"
        else:
            assert not final and holding, "no durable part file with drift columns before the kill"
            assert len(names) < 4, "the kill came after most of the snapshot"
        result = run(drift_job(), output, tradesync_env(url))
    assert result.resumed == 1
    assert drift_values(output) == drift_values(reference.output)
    meta = manifest(output, "accounts")["datasets"]["accounts"]
    want = manifest(reference.output, "accounts")["datasets"]["accounts"]
    for key in ("drift_types", "drift_fallbacks", "unknown_fields", "schema", "rows"):
        assert meta[key] == want[key], key
    files = {f["name"]: f["bytes"] for f in meta["files"]}
    assert files == {p.name: p.stat().st_size for p in partition(output, "accounts").glob("part-*.parquet")}


def test_drift_columns_settle_the_same_on_object_storage(exports, tmp_path: Path) -> None:
    """On S3 the part files are uploads pending until the commit, so those holding drift columns
    wait in a readable spool: the published types and values equal the local run's, and nothing of
    the spool is left behind."""
    from .s3_helpers import s3_server

    reference = exports("typed_fields")
    with s3_server() as s3, tradesync_simulator(sim_config("typed_fields")) as (url, _):
        result = run(drift_job(), s3.url("drift"), tradesync_env(url) | s3.env())  # type: ignore[arg-type]
        root = s3.mirror("drift/", tmp_path / "mirror")
        assert s3.keys("drift/_staging/") == {} and s3.pending_uploads("drift/") == []
    assert result.datasets and drift_values(root) == drift_values(reference.output)
    meta = manifest(root, "accounts")["datasets"]["accounts"]
    want = manifest(reference.output, "accounts")["datasets"]["accounts"]
    for key in ("drift_types", "drift_fallbacks", "unknown_fields", "schema", "rows"):
        assert meta[key] == want[key], key
