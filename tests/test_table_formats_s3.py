"""Delta and Iceberg tables on ``s3://`` (moto's S3 server on loopback): the same commits as on a
local folder, through the storage seam; read back with deltalake and pyiceberg from the bucket."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.sandbox.tradesync import tradesync_simulator
from exporter.sources.tradesync import ACCOUNT

from .chaos_helpers import command_error
from .helpers import run, tradesync_env
from .s3_helpers import CREDENTIALS, S3Server, s3_server
from .test_table_formats import DAY1, DAY2, assert_rows_equal, ids, on_date, sim, table_job

pytest.importorskip("deltalake")
pytest.importorskip("pyiceberg")
pytest.importorskip("moto")

KEYS = CREDENTIALS


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server("tables-bucket") as server:
        yield server


def manifest(s3: S3Server, key: str) -> dict[str, Any]:
    return json.loads(s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read())


def environment(s3: S3Server, url: str) -> dict[str, str]:
    return tradesync_env(url) | s3.env()


def delta_log_runs(s3: S3Server, root: str) -> list[str | None]:
    """The run id of each commit in a Delta table's log, oldest first, read from the bucket."""
    runs = []
    for key in sorted(k for k in s3.keys(f"{root}/_delta_log/") if k.endswith(".json")):
        lines = s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read().splitlines()
        info = next(json.loads(line)["commitInfo"] for line in lines if b"commitInfo" in line)
        runs.append(info.get("brokerexport.run_id"))
    return runs


def two_runs_on_one_date(job: Any, output: str, s3: S3Server) -> tuple[list[Any], list[list[dict[str, Any]]]]:
    """Day 1 (seed 1), day 2 (seed 2), then day 1 again (seed 3)."""
    results, accounts = [], []
    for seed, count, day in ((1, 120, DAY1), (2, 90, DAY2), (3, 60, DAY1)):
        with tradesync_simulator(sim(seed, count)) as (url, simulator):
            results.append(run(job, output, environment(s3, url), now=day))
            accounts.append(list(simulator.expected_accounts()))
    return results, accounts


def test_delta_tables_on_s3(s3: S3Server) -> None:
    from deltalake import DeltaTable

    output = s3.url("delta-out")
    results, accounts = two_runs_on_one_date(table_job("delta", datasets=("accounts", "balances")), output, s3)
    options = {"AWS_ENDPOINT_URL": s3.endpoint, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",
               "AWS_ACCESS_KEY_ID": KEYS["AWS_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY": KEYS["AWS_SECRET_ACCESS_KEY"]}
    table = DeltaTable(f"{output}/tradesync/accounts", storage_options=options)
    rows = table.to_pyarrow_table()
    assert_rows_equal(on_date(rows, DAY1), accounts[2], ACCOUNT.arrow_schema())
    assert_rows_equal(on_date(rows, DAY2), accounts[1], ACCOUNT.arrow_schema())
    assert delta_log_runs(s3, "delta-out/tradesync/accounts") == [r.run_id for r in results]
    old = DeltaTable(f"{output}/tradesync/accounts", version=0, storage_options=options).to_pyarrow_table()
    assert ids(old) == sorted(a["id"] for a in accounts[0])  # time travel: the replaced file is still there
    day1 = manifest(s3, f"delta-out/tradesync/accounts/snapshot_date={DAY1.date()}/_manifest.json")
    assert day1["run_id"] == results[2].run_id
    assert day1["datasets"]["accounts"]["table"] == {"format": "delta", "uri": f"{output}/tradesync/accounts",
                                                      "version": 2}
    assert not s3.pending_uploads("delta-out/") and not s3.keys("delta-out/_staging/")


def test_iceberg_tables_on_s3(s3: S3Server, tmp_path: Path) -> None:
    from pyiceberg.catalog import load_catalog

    output = s3.url("iceberg-out")
    catalog_uri = f"sqlite:///{tmp_path}/catalog.db"
    job = table_job("iceberg", datasets=("accounts", "balances"), iceberg={"type": "sql", "uri": catalog_uri})
    results, accounts = two_runs_on_one_date(job, output, s3)
    catalog = load_catalog("brokerexport", type="sql", uri=catalog_uri, **{
        "s3.endpoint": s3.endpoint, "s3.region": "us-east-1",
        "s3.access-key-id": KEYS["AWS_ACCESS_KEY_ID"], "s3.secret-access-key": KEYS["AWS_SECRET_ACCESS_KEY"]})
    table = catalog.load_table(("tradesync", "accounts"))
    assert table.location() == f"{output}/tradesync/accounts"
    rows = table.scan().to_arrow()
    assert_rows_equal(on_date(rows, DAY1), accounts[2], ACCOUNT.arrow_schema())
    assert_rows_equal(on_date(rows, DAY2), accounts[1], ACCOUNT.arrow_schema())
    snapshots = table.snapshots()
    assert [s.summary.get("brokerexport.run_id") for s in snapshots] == [r.run_id for r in results]
    assert ids(table.scan(snapshot_id=snapshots[0].snapshot_id).to_arrow()) == sorted(a["id"] for a in accounts[0])
    day1 = manifest(s3, f"iceberg-out/tradesync/accounts/snapshot_date={DAY1.date()}/_manifest.json")
    assert day1["datasets"]["accounts"]["table"]["snapshot_id"] == snapshots[-1].snapshot_id
    assert not s3.pending_uploads("iceberg-out/") and not s3.keys("iceberg-out/_staging/")


def test_iceberg_on_s3_without_a_catalog_is_a_job_file_error(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    job = table_job("iceberg", datasets=("accounts",))
    with tradesync_simulator(sim(1, 10)) as (url, _):
        line = command_error(job, s3.url("no-catalog"), environment(s3, url), 2, monkeypatch, capsys)
    assert "key 'iceberg'" in line and "s3:// output needs an Iceberg catalog" in line, line
    assert not s3.keys("no-catalog/")
