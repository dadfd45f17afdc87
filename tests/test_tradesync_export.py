"""End to end against the Tradesync simulator over real loopback HTTP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from exporter.sandbox.tradesync import ALL_FAULTS, TradesyncSimConfig, tradesync_simulator
from exporter.sources.tradesync import ACCOUNT, TRADE

from .helpers import expected_value, make_job, read_dataset, rows_by_id, run, tradesync_env

ACCOUNTS = 25_000


def tradesync_job(**source: object) -> object:
    settings = {"concurrency": 8, **source}
    return make_job({"tradesync": settings})


@pytest.fixture(scope="module")
def clean_export(tmp_path_factory: pytest.TempPathFactory):
    """One 25,000-account export (2 trades per account) shared by the assertions below."""
    output = tmp_path_factory.mktemp("clean")
    config = TradesyncSimConfig(accounts=ACCOUNTS, trades_per_account=2, rate_limit_rps=0)
    with tradesync_simulator(config) as (base_url, simulator):
        result = run(tradesync_job(), output, tradesync_env(base_url))
        expected_accounts = list(simulator.expected_accounts())
        expected_trades = list(simulator.expected_trades())
    return output, result, expected_accounts, expected_trades


def test_accounts_equal_the_simulator_exactly(clean_export) -> None:
    output, _, expected, _ = clean_export
    table = read_dataset(output, "tradesync", "accounts")
    assert table.num_rows == ACCOUNTS
    ids = table.column("id").to_pylist()
    assert len(set(ids)) == len(ids) == len(expected)
    got = rows_by_id(table)
    schema = ACCOUNT.arrow_schema()
    for row, exp in zip(got, expected, strict=True):
        for field in schema:
            assert row[field.name] == expected_value(exp.get(field.name), field.type), (exp["id"], field.name)
    # money is exact: the float route would give 99999999999.99000549
    balances = {r["id"]: r["balance"] for r in got}
    assert any(str(b).startswith("99999999999.99") and b == b.quantize(b) for b in balances.values())
    assert max(balances.values()) == expected_value("99999999999.99", schema.field("balance").type)


def test_types_are_explicit(clean_export) -> None:
    output, *_ = clean_export
    schema = read_dataset(output, "tradesync", "accounts").schema
    assert str(schema.field("balance").type) == "decimal128(38, 10)"
    assert str(schema.field("credit").type) == "decimal128(38, 10)"  # zeros first, still decimal
    assert str(schema.field("created_at").type) == "timestamp[us, tz=UTC]"
    assert str(schema.field("id").type) == "int64"


def test_password_is_never_exported(clean_export) -> None:
    output, _, expected, _ = clean_export
    assert all(e["password"] for e in expected)
    assert "password" not in read_dataset(output, "tradesync", "accounts").column_names
    secrets = {e["password"].encode() for e in expected[:50]}
    for path in output.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(s in data for s in secrets), path
    manifest = (next((output / "tradesync" / "accounts").glob("snapshot_date=*")) / "_manifest.json").read_text()
    assert '"withheld_fields": [\n        "password"' in manifest


def test_trades_equal_the_simulator_exactly(clean_export) -> None:
    output, _, _, expected = clean_export
    table = read_dataset(output, "tradesync", "trades")
    got = rows_by_id(table)
    assert [r["id"] for r in got] == [e["id"] for e in expected]
    schema = TRADE.arrow_schema()
    for row, exp in zip(got, expected, strict=True):
        for field in schema:
            assert row[field.name] == expected_value(exp.get(field.name), field.type), (exp["id"], field.name)
    assert {"deposit", "buy", "sell"} <= {r["type"] for r in got}


def test_balances_and_equity_are_the_canonical_tables(clean_export) -> None:
    output, _, expected, _ = clean_export
    balances = read_dataset(output, "tradesync", "balances")
    assert balances.column_names[:6] == ["snapshot_at", "source", "account_id", "currency", "balance", "credit"]
    equity = read_dataset(output, "tradesync", "equity")
    assert equity.column_names[:5] == ["snapshot_at", "source", "account_id", "currency", "equity"]
    by_id = {e["id"]: e for e in expected}
    for row in equity.to_pylist()[:2000]:
        exp = by_id[row["account_id"]]
        assert row["free_margin"] == expected_value(exp["free_margin"], equity.schema.field("free_margin").type)
        assert row["source"] == "tradesync"
        assert row["snapshot_at"].tzinfo is not None


def test_duckdb_reads_the_snapshot_with_hive_partitions(clean_export) -> None:
    output, _, expected, _ = clean_export
    glob = str(output / "*" / "balances" / "**" / "*.parquet")
    rows = duckdb.sql(
        f"SELECT source, currency, sum(balance) AS total, count(*) AS n, min(snapshot_date) AS d "
        f"FROM read_parquet('{glob}', hive_partitioning=true, union_by_name=true) GROUP BY ALL ORDER BY currency"
    ).fetchall()
    money = ACCOUNT.arrow_schema().field("balance").type
    want: dict[str, object] = {}
    for e in expected:
        want[e["currency"]] = want.get(e["currency"], 0) + expected_value(e["balance"], money)
    assert {r[1]: r[2] for r in rows} == want
    assert sum(r[3] for r in rows) == ACCOUNTS


def test_manifest_describes_the_snapshot(clean_export) -> None:
    import json

    output, result, *_ = clean_export
    partition = next((output / "tradesync" / "trades").glob("snapshot_date=*"))
    manifest = json.loads((partition / "_manifest.json").read_text())
    assert manifest["run_id"] == result.run_id
    assert manifest["datasets"]["accounts"]["rows"] == ACCOUNTS
    assert manifest["requests"]["requests"] >= ACCOUNTS // 1000
    files = manifest["datasets"]["trades"]["files"]
    assert sum(f["rows"] for f in files) == manifest["datasets"]["trades"]["rows"]
    assert all((partition / f["name"]).stat().st_size == f["bytes"] for f in files)
    assert not (output / "_staging" / "test").exists()


def test_faults_and_rate_limit_give_identical_rows(clean_export, tmp_path: Path) -> None:
    clean_output, *_ = clean_export
    config = TradesyncSimConfig(
        accounts=ACCOUNTS,
        trades_per_account=2,
        error_rate=0.10,
        fault_kinds=ALL_FAULTS,
        rate_limit_rps=400,
        rate_limit_burst=20,
        retry_after_header=True,
    )
    with tradesync_simulator(config) as (base_url, simulator):
        job = tradesync_job(max_attempts=30)
        result = run(job, tmp_path, tradesync_env(base_url))
        faults = simulator.state()["faults_injected"]
    stats = result.requests["tradesync"]
    assert stats["retries"] > 10, stats  # faults really happened and were retried
    assert faults > 10
    for dataset in ("accounts", "trades"):
        clean = rows_by_id(read_dataset(clean_output, "tradesync", dataset))
        faulty = rows_by_id(read_dataset(tmp_path, "tradesync", dataset))
        assert faulty == clean, dataset


def test_wrong_credentials_exit_3_fast_and_keep_previous_snapshot(tmp_path: Path) -> None:
    job_file = tmp_path / "job.toml"
    job_file.write_text('name = "creds"\n[sources.tradesync]\ndatasets = ["accounts", "balances"]\n')
    config = TradesyncSimConfig(accounts=1500, trades_per_account=0, rate_limit_rps=0)
    with tradesync_simulator(config) as (base_url, sim):
        env = {"TRADESYNC_BASE_URL": base_url, "TRADESYNC_API_KEY": "sim-key", "TRADESYNC_API_SECRET": "sim-secret"}
        ok = _cli(["run", str(job_file), "--output", str(tmp_path / "out")], env)
        assert ok.returncode == 0, ok.stderr
        before = _snapshot_files(tmp_path / "out")
        secret = "wrong-secret-Zq81"
        sim.reset()
        bad = _cli(["run", str(job_file), "--output", str(tmp_path / "out")], {**env, "TRADESYNC_API_SECRET": secret})
        state = sim.state()
    assert bad.returncode == 3
    # fast because nothing is retried: each dataset's first request is refused once and the run stops
    assert set(state["responses_by_status"]) == {"401"}
    assert state["requests_total"] <= 2, state
    lines = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "TRADESYNC_API_KEY" in lines[0] and "NOT_AUTHORISED" in lines[0], bad.stderr
    assert "Traceback" not in bad.stderr
    assert secret not in bad.stderr + bad.stdout
    assert _snapshot_files(tmp_path / "out") == before
    assert read_dataset(tmp_path / "out", "tradesync", "accounts").num_rows == 1500


def test_rerun_replaces_and_failed_run_keeps_old_snapshot(tmp_path: Path) -> None:
    output = tmp_path / "out"
    with tradesync_simulator(TradesyncSimConfig(accounts=3000, trades_per_account=1, rate_limit_rps=0)) as (url, _):
        first = run(tradesync_job(page_size=200), output, tradesync_env(url))
        second = run(tradesync_job(page_size=200), output, tradesync_env(url))
    assert first.snapshot_date == second.snapshot_date
    accounts = read_dataset(output, "tradesync", "accounts")
    assert accounts.num_rows == 3000  # replaced, not appended
    assert len(set(accounts.column("id").to_pylist())) == 3000
    before = _snapshot_files(output)
    # a run that dies midway: every 7th request fails and no retry is allowed
    failing = TradesyncSimConfig(accounts=3000, trades_per_account=1, rate_limit_rps=0, fail_every_n=7)
    with tradesync_simulator(failing) as (url, _), pytest.raises(Exception, match="failed after 1 attempts"):
        run(tradesync_job(page_size=200, max_attempts=1), output, tradesync_env(url))
    assert _snapshot_files(output) == before
    assert read_dataset(output, "tradesync", "accounts").num_rows == 3000
    for path in (p for p in before if p.suffix == ".parquet"):
        pq.read_metadata(path)  # every published file is still a complete Parquet file


def _snapshot_files(output: Path) -> dict[Path, int]:
    return {
        p: p.stat().st_mtime_ns
        for p in output.glob("tradesync/*/snapshot_date=*/*")
        if p.is_file()
    }


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESYNC_")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args], capture_output=True, text=True, env=full_env, timeout=120
    )
