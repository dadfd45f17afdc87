"""Delta Lake and Apache Iceberg output, end to end against the Tradesync simulator over loopback
HTTP, read back with each format's own library (deltalake, pyiceberg).

Runs are pinned to dates with ``RunOptions.now``: a run on 2026-12-01, one on 2026-12-02, then a
rerun on 2026-12-01 from a simulator serving other accounts. Every simulator seeds its own data,
so which rows a date holds tells which run wrote them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from exporter.errors import SchemaDriftError, TableError
from exporter.sandbox.tradesync import TradesyncSimConfig, tradesync_simulator
from exporter.sources.tradesync import ACCOUNT, TRADE

from .chaos_helpers import command_error, exporter_env, logged_simulator, served_records
from .helpers import expected_value, make_job, run, tradesync_env

pytest.importorskip("deltalake")
pytest.importorskip("pyiceberg")

FORMATS = ("delta", "iceberg")
DAY1, DAY2, DAY3 = (datetime(2026, 12, d, 3, tzinfo=UTC) for d in (1, 2, 3))
HERE = Path(__file__).resolve().parent


def table_job(output_format: str, name: str = "tables", datasets: tuple[str, ...] = ("accounts", "balances", "trades"),
              **top: Any) -> Any:
    source = {"concurrency": 4, "datasets": list(datasets), **top.pop("source", {})}
    return make_job({"tradesync": source}, name=name, format=output_format, rows_per_file=1000, **top)


def sim(seed: int, accounts: int, **extra: Any) -> TradesyncSimConfig:
    return TradesyncSimConfig(seed=seed, accounts=accounts, trades_per_account=3, rate_limit_rps=0, **extra)


# --------------------------------------------------------------------------- reading tables back


def iceberg_catalog(output: Path) -> Any:
    from pyiceberg.catalog import load_catalog

    return load_catalog("brokerexport", type="sql", uri=f"sqlite:///{output.resolve()}/_iceberg/catalog.db")


def read_table(output: Path, output_format: str, dataset: str, at: int | None = None) -> pa.Table:
    """The table as its own library reads it; ``at``: a Delta version or an Iceberg snapshot id."""
    if output_format == "delta":
        from deltalake import DeltaTable

        return DeltaTable(str(output / "tradesync" / dataset), version=at).to_pyarrow_table()
    table = iceberg_catalog(output).load_table(("tradesync", dataset))
    return table.scan(snapshot_id=at).to_arrow()


def run_commits(output: Path, output_format: str, dataset: str) -> list[str]:
    """The run id of each commit of the table, oldest first."""
    if output_format == "delta":
        from deltalake import DeltaTable

        history = DeltaTable(str(output / "tradesync" / dataset)).history()
        return [h.get("brokerexport.run_id") for h in reversed(history)]
    table = iceberg_catalog(output).load_table(("tradesync", dataset))
    return [s.summary.get("brokerexport.run_id") for s in table.snapshots()]


def table_exists(output: Path, output_format: str, dataset: str) -> bool:
    if output_format == "delta":
        return (output / "tradesync" / dataset / "_delta_log").is_dir()
    catalog = output / "_iceberg" / "catalog.db"
    return catalog.exists() and iceberg_catalog(output).table_exists(("tradesync", dataset))


def on_date(table: pa.Table, day: datetime) -> pa.Table:
    return table.filter(pa.compute.equal(table.column("snapshot_date"), pa.scalar(day.date(), pa.date32())))


def ids(table: pa.Table) -> list[int]:
    return sorted(table.column("id").to_pylist())


def manifest_at(output: Path, dataset: str, day: datetime) -> dict[str, Any]:
    path = output / "tradesync" / dataset / f"snapshot_date={day.date()}" / "_manifest.json"
    return json.loads(path.read_text())


def version_of(reached: dict[str, Any]) -> int:
    return reached["version"] if reached["format"] == "delta" else reached["snapshot_id"]


def assert_rows_equal(table: pa.Table, expected: list[dict[str, Any]], schema: pa.Schema) -> None:
    got = sorted(table.select(schema.names).to_pylist(), key=lambda r: r["id"])
    assert len(got) == len(expected)
    for row, served in zip(got, sorted(expected, key=lambda r: r["id"]), strict=True):
        for field in schema:
            assert row[field.name] == expected_value(served.get(field.name), field.type), (served["id"], field.name)


# --------------------------------------------------------------------------- three runs, two dates


class History:
    """run 1 (day 1, seed 1), run 2 (day 2, seed 2), run 3 (day 1 again, seed 3)."""

    def __init__(self, output_format: str, output: Path) -> None:
        self.format = output_format
        self.output = output
        self.results = []
        self.accounts: list[list[dict[str, Any]]] = []
        self.trades: list[list[dict[str, Any]]] = []
        for seed, accounts, day in ((1, 300, DAY1), (2, 200, DAY2), (3, 150, DAY1)):
            with tradesync_simulator(sim(seed, accounts)) as (url, simulator):
                self.results.append(run(table_job(output_format), output, tradesync_env(url), now=day))
                self.accounts.append(list(simulator.expected_accounts()))
                self.trades.append(list(simulator.expected_trades()))

    def reached(self, run_index: int, dataset: str) -> dict[str, Any]:
        result = self.results[run_index]
        found = [d.table for d in result.datasets if d.dataset == dataset]
        assert found and found[0] is not None
        return found[0]


@pytest.fixture(scope="module", params=FORMATS)
def history(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> History:
    return History(request.param, tmp_path_factory.mktemp(request.param))


def test_a_rerun_replaces_its_date_only_and_values_are_exact(history: History) -> None:
    for dataset, expected, schema in (("accounts", history.accounts, ACCOUNT.arrow_schema()),
                                      ("trades", history.trades, TRADE.arrow_schema())):
        table = read_table(history.output, history.format, dataset)
        # day 1 holds the rerun's rows (seed 3), day 2 the second run's: untouched by the rerun
        assert_rows_equal(on_date(table, DAY1), expected[2], schema)
        assert_rows_equal(on_date(table, DAY2), expected[1], schema)
        assert table.num_rows == len(expected[2]) + len(expected[1])
        assert set(table.column("snapshot_date").to_pylist()) == {DAY1.date(), DAY2.date()}
    balances = read_table(history.output, history.format, "balances")
    for day, run_index in ((DAY1, 2), (DAY2, 1)):
        got = sorted(on_date(balances, day).column("account_id").to_pylist())
        assert got == sorted(a["id"] for a in history.accounts[run_index])


def test_one_commit_per_table_per_run_with_the_run_id(history: History) -> None:
    run_ids = [r.run_id for r in history.results]
    for dataset in ("accounts", "balances", "trades"):
        assert run_commits(history.output, history.format, dataset) == run_ids


def test_time_travel_to_the_version_the_manifest_names(history: History) -> None:
    first = history.reached(0, "accounts")
    old = read_table(history.output, history.format, "accounts", at=version_of(first))
    assert ids(old) == sorted(a["id"] for a in history.accounts[0])
    assert set(old.column("snapshot_date").to_pylist()) == {DAY1.date()}
    # the manifest of day 1 is the rerun's and names the version its commit produced, for every dataset
    manifest = manifest_at(history.output, "accounts", DAY1)
    assert manifest["run_id"] == history.results[2].run_id
    for dataset in ("accounts", "balances", "trades"):
        assert manifest["datasets"][dataset]["table"] == history.reached(2, dataset)
    latest = read_table(history.output, history.format, "accounts", at=version_of(history.reached(2, "accounts")))
    assert latest.num_rows == len(history.accounts[2]) + len(history.accounts[1])
    if history.format == "delta":
        assert [history.reached(i, "accounts")["version"] for i in range(3)] == [0, 1, 2]


def test_types_survive_exactly(history: History) -> None:
    if history.format == "delta":
        from deltalake import DeltaTable

        delta = DeltaTable(str(history.output / "tradesync" / "accounts"))
        fields = {f.name: repr(f.type) for f in delta.schema().fields}
        assert 'decimal(38,10)' in fields["balance"] and '"timestamp"' in fields["created_at"]
        assert '"long"' in fields["id"] and '"date"' in fields["snapshot_date"]
    else:
        schema = iceberg_catalog(history.output).load_table(("tradesync", "accounts")).schema()
        assert str(schema.find_field("balance").field_type) == "decimal(38, 10)"
        assert str(schema.find_field("created_at").field_type) == "timestamptz"
        assert str(schema.find_field("id").field_type) == "long"
        assert str(schema.find_field("snapshot_date").field_type) == "date"
    table = read_table(history.output, history.format, "accounts")
    assert table.schema.field("balance").type == pa.decimal128(38, 10)
    assert table.schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("id").type == pa.int64()


def test_one_file_per_dataset_per_run(history: History) -> None:
    """No small-file explosion: each run adds one part file per dataset (fewer rows than rows_per_file)."""
    for dataset in ("accounts", "balances", "trades"):
        if history.format == "delta":
            from deltalake import DeltaTable

            files = DeltaTable(str(history.output / "tradesync" / dataset)).file_uris()
        else:
            table = iceberg_catalog(history.output).load_table(("tradesync", dataset))
            files = [task.file.file_path for task in table.scan().plan_files()]
        assert len(files) == 2, files  # day 1 (the rerun's) and day 2
        assert all(history.results[2].run_id in f or history.results[1].run_id in f for f in files)
        assert not list((history.output / "_staging").glob("*/*"))


# --------------------------------------------------------------------------- schema drift


@pytest.mark.parametrize("output_format", FORMATS)
def test_evolve_adds_the_new_column_in_the_same_commit_and_strict_commits_nothing(
    output_format: str, tmp_path: Path
) -> None:
    job = table_job(output_format, datasets=("accounts", "balances"), source={"parallel_walks": 1})
    with tradesync_simulator(sim(1, 300)) as (url, _):
        first = run(job, tmp_path, tradesync_env(url), now=DAY1)
    with tradesync_simulator(sim(1, 300, drift="new_field")) as (url, _):
        second = run(job, tmp_path, tradesync_env(url), now=DAY2)
        served = {r["id"]: r for r in served_records(url, "/accounts")}
    assert run_commits(tmp_path, output_format, "accounts") == [first.run_id, second.run_id]
    table = read_table(tmp_path, output_format, "accounts")
    # the drift column in its settled exact form (a decimal here), added to the table as such
    assert table.schema.field("risk_score").type == pa.decimal128(38, 1)
    assert set(on_date(table, DAY1).column("risk_score").to_pylist()) == {None}  # before the API added it
    day2 = on_date(table, DAY2)
    got = dict(zip(day2.column("id").to_pylist(), day2.column("risk_score").to_pylist(), strict=True))
    want = {i: r.get("risk_score") for i, r in served.items()}  # Decimals parsed from the served JSON text
    assert got == want and any(v is not None for v in got.values()) and any(v is None for v in got.values())
    meta = manifest_at(tmp_path, "accounts", DAY2)["datasets"]["accounts"]
    assert meta["unknown_fields"] == {"risk_score": sum(v is not None for v in want.values())}
    assert "risk_score" not in read_table(tmp_path, output_format, "balances").column_names

    strict = table_job(output_format, datasets=("accounts", "balances"), source={"parallel_walks": 1},
                       schema_drift="strict")
    with tradesync_simulator(sim(1, 300, drift="new_field")) as (url, _), \
            pytest.raises(SchemaDriftError, match="risk_score"):
        run(strict, tmp_path, tradesync_env(url), now=DAY3)
    for dataset in ("accounts", "balances"):
        assert run_commits(tmp_path, output_format, dataset) == [first.run_id, second.run_id]


# --------------------------------------------------------------------------- incremental trades


@pytest.mark.parametrize("output_format", FORMATS)
def test_incremental_trades_append_one_partition_per_run(output_format: str, tmp_path: Path) -> None:
    job = table_job(output_format, datasets=("trades",), source={"trades_mode": "incremental"})
    config = TradesyncSimConfig(accounts=200, trades_per_account=5, rate_limit_rps=0)
    with tradesync_simulator(config) as (url, simulator):
        first = run(job, tmp_path, tradesync_env(url), now=DAY1)
        at_first = {t["id"] for t in simulator.expected_trades()}
    with tradesync_simulator(config) as (url, simulator):
        simulator.advance(3 * 86_400)
        second = run(job, tmp_path, tradesync_env(url), now=DAY1)
        now = {t["id"]: t for t in simulator.expected_trades()}
    table = read_table(tmp_path, output_format, "trades_incremental")
    by_run: dict[str, list[int]] = {}
    for run_id, trade_id in zip(table.column("run_id").to_pylist(), table.column("id").to_pylist(), strict=True):
        by_run.setdefault(run_id, []).append(trade_id)
    assert set(by_run) == {first.run_id, second.run_id}
    assert sorted(by_run[first.run_id]) == sorted(at_first)  # the first run is a full one
    # the second: the new trades and every trade open at the first run, each once
    assert len(by_run[second.run_id]) == len(set(by_run[second.run_id]))
    assert set(now) - at_first <= set(by_run[second.run_id]) < set(now)
    assert run_commits(tmp_path, output_format, "trades_incremental") == [first.run_id, second.run_id]
    cursor = next((tmp_path / "tradesync" / "trades_incremental").glob(f"snapshot_date=*/run_id={second.run_id}"))
    assert json.loads((cursor / "_cursor.json").read_text())["run_id"] == second.run_id


# --------------------------------------------------------------------------- a crash between table commits


@pytest.mark.parametrize("output_format", FORMATS)
def test_a_crash_between_table_commits_then_a_rerun_commits_the_rest_once(output_format: str, tmp_path: Path) -> None:
    job_file = tmp_path / "job.toml"
    job_file.write_text(f'name = "crash"\nformat = "{output_format}"\nrows_per_file = 1000\n\n[sources.tradesync]\n'
                        'datasets = ["accounts", "balances", "trades"]\nconcurrency = 4\n')
    output = tmp_path / "out"
    args = ["run", str(job_file), "--output", str(output)]
    with logged_simulator(sim(5, 300)) as (url, simulator, requests):
        env = exporter_env(url)
        killed = subprocess.run([sys.executable, str(HERE / "table_chaos.py"), "2", "--", *args], env=env,
                                capture_output=True, text=True, timeout=120)
        assert killed.returncode == -9, killed.stderr[-2000:]
        journal = json.loads((output / "_staging" / "crash" / "commit.json").read_text())
        run_id = journal["run_id"]
        # the first table is committed and recorded, the second committed but not recorded, the third not committed
        assert list(journal["tables"]) == ["tradesync/accounts"]
        assert run_commits(output, output_format, "accounts") == [run_id]
        assert run_commits(output, output_format, "balances") == [run_id]
        assert not table_exists(output, output_format, "trades")
        assert not (output / "tradesync" / "accounts" / f"snapshot_date={journal['summary']['snapshot_date']}"
                    / "_manifest.json").exists()  # documents come once every table is committed

        requests.attempt = 1
        rerun = subprocess.run([sys.executable, "-m", "exporter", *args], env=env, capture_output=True, text=True,
                               timeout=120)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert "its interrupted commit was completed" in rerun.stdout
        assert requests.count(1) == 0  # the rerun only finished the commit: nothing fetched again
        expected_accounts = list(simulator.expected_accounts())
        expected_trades = list(simulator.expected_trades())
    for dataset in ("accounts", "balances", "trades"):
        assert run_commits(output, output_format, dataset) == [run_id]  # once each, never twice
    assert ids(read_table(output, output_format, "accounts")) == sorted(a["id"] for a in expected_accounts)
    assert ids(read_table(output, output_format, "trades")) == sorted(t["id"] for t in expected_trades)
    day = datetime.fromisoformat(journal["summary"]["snapshot_date"]).replace(tzinfo=UTC)
    manifest = manifest_at(output, "trades", day)
    assert manifest["run_id"] == run_id
    for dataset in ("accounts", "balances", "trades"):
        reached = manifest["datasets"][dataset]["table"]
        assert reached["format"] == output_format and version_of(reached) is not None
        assert read_table(output, output_format, dataset, at=version_of(reached)).num_rows > 0
    assert not (output / "_staging" / "crash").exists()


# --------------------------------------------------------------------------- failures: one line, exit 1


def test_a_delta_table_whose_column_type_differs_fails_before_any_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from deltalake import write_deltalake

    foreign = pa.table({"account_id": pa.array([1], pa.int64()), "balance": pa.array(["12.5"], pa.string()),
                        "snapshot_date": pa.array([date(2026, 1, 1)], pa.date32())})
    write_deltalake(str(tmp_path / "tradesync" / "balances"), foreign, partition_by=["snapshot_date"])
    job = table_job("delta", datasets=("accounts", "balances"))
    with tradesync_simulator(sim(1, 100)) as (url, _):
        line = command_error(job, tmp_path, tradesync_env(url), 1, monkeypatch, capsys)
    assert "'balance'" in line and "string" in line and "decimal(38,10)" in line and "nothing was committed" in line
    assert not table_exists(tmp_path, "delta", "accounts")  # the other table was not committed either
    assert run_commits(tmp_path, "delta", "balances") == [None]


def test_an_iceberg_table_whose_column_type_differs_fails_before_any_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "_iceberg").mkdir()
    catalog = iceberg_catalog(tmp_path)
    catalog.create_namespace("tradesync")
    catalog.create_table(("tradesync", "balances"), schema=pa.schema([("balance", pa.string())]),
                         location=str(tmp_path / "tradesync" / "balances"))
    job = table_job("iceberg", datasets=("accounts", "balances"))
    with tradesync_simulator(sim(1, 100)) as (url, _):
        line = command_error(job, tmp_path, tradesync_env(url), 1, monkeypatch, capsys)
    assert "tradesync.balances" in line and "balance" in line and "nothing was committed" in line, line
    assert not table_exists(tmp_path, "iceberg", "accounts")
    assert iceberg_catalog(tmp_path).load_table(("tradesync", "balances")).snapshots() == []


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pyiceberg: REST without an OAuth2 URI
def test_an_unreachable_iceberg_catalog_fails_before_fetching(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    job = table_job("iceberg", iceberg={"type": "rest", "uri": f"http://127.0.0.1:{port}",
                                        "credential": "client:s3cr3t-value"})
    with logged_simulator(sim(1, 100)) as (url, _, requests):
        line = command_error(job, tmp_path, tradesync_env(url), 1, monkeypatch, capsys)
        assert requests.count(0) == 0
    assert "iceberg catalog 'brokerexport' unreachable" in line and "s3cr3t-value" not in line, line


def test_a_concurrent_delta_writer_on_the_same_date_never_leaves_a_mixed_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer replaces the same date between our read of the table and our commit. Delta
    lets the later replace-where win (its remove actions are taken at commit time): the date then
    holds exactly this run's rows, none of the other writer's, and both commits are in the log."""
    from deltalake import write_deltalake

    from exporter.tables import DeltaTables

    job = table_job("delta", datasets=("balances",))
    with tradesync_simulator(sim(1, 100)) as (url, _):
        first = run(job, tmp_path, tradesync_env(url), now=DAY1)
    day = DAY1.date().isoformat()
    original_schema = DeltaTables._schema
    raced: list[str] = []

    def schema_then_race(self: DeltaTables, table: dict[str, Any], existing: Any) -> Any:
        result = original_schema(self, table, existing)
        if existing is not None and not raced:
            # the table as our commit read it is now stale: another writer replaces the same date
            other = existing.to_pyarrow_table().slice(0, 1)
            write_deltalake(self.uri(table["root"]), other, mode="overwrite", predicate=f"snapshot_date = '{day}'")
            raced.append(day)
        return result

    monkeypatch.setattr(DeltaTables, "_schema", schema_then_race)
    with tradesync_simulator(sim(2, 80)) as (url, simulator):
        second = run(job, tmp_path, tradesync_env(url), now=DAY1)
        expected = sorted(a["id"] for a in simulator.expected_accounts())
    assert raced == [day]
    assert run_commits(tmp_path, "delta", "balances") == [first.run_id, None, second.run_id]
    table = read_table(tmp_path, "delta", "balances")
    assert sorted(table.column("account_id").to_pylist()) == expected


def test_a_concurrent_iceberg_writer_that_wins_fails_the_run_in_one_line(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer deletes the date's files between our plan and our commit: pyiceberg retries the
    commit on the new metadata, finds the files it replaces gone (a real conflict), and gives up.
    The run fails in one line, exit 1, and the table holds the other writer's snapshot, not ours."""
    import pyiceberg.io.pyarrow
    from pyiceberg.expressions import EqualTo

    job = table_job("iceberg", datasets=("balances",))
    with tradesync_simulator(sim(1, 100)) as (url, _):
        first = run(job, tmp_path, tradesync_env(url), now=DAY1)
    original = pyiceberg.io.pyarrow.parquet_file_to_data_file
    raced: list[bool] = []

    def plan_then_race(*args: Any, **kwargs: Any) -> Any:
        if not raced:
            raced.append(True)
            other = iceberg_catalog(tmp_path).load_table(("tradesync", "balances"))
            other.delete(EqualTo("snapshot_date", "2026-12-01"))
        return original(*args, **kwargs)

    monkeypatch.setattr(pyiceberg.io.pyarrow, "parquet_file_to_data_file", plan_then_race)
    with tradesync_simulator(sim(2, 80)) as (url, _), pytest.raises(TableError) as failure:
        run(job, tmp_path, tradesync_env(url), now=DAY1)
    assert raced == [True]
    message = str(failure.value)
    assert failure.value.exit_code == 1 and len(message.splitlines()) == 1
    assert "commit failed" in message and "rerun to commit them" in message, message
    assert run_commits(tmp_path, "iceberg", "balances") == [first.run_id, None]
    assert read_table(tmp_path, "iceberg", "balances").num_rows == 0


def test_a_parquet_run_never_imports_the_table_libraries(tmp_path: Path) -> None:
    """The extras stay optional: a Parquet export (sandbox, both sources) loads neither deltalake,
    pyiceberg nor SQLAlchemy."""
    code = (
        "import sys, asyncio\n"
        "from exporter.cli import demo_job\n"
        "from exporter.runner import RunOptions, run_job\n"
        f"result = asyncio.run(run_job(demo_job(50), RunOptions(output={str(tmp_path)!r})))\n"
        "assert sum(d.rows for d in result.datasets) > 0\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'deltalake', 'pyiceberg', 'sqlalchemy'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
    assert list(tmp_path.glob("tradesync/accounts/snapshot_date=*/part-*.parquet"))


@pytest.mark.parametrize("output_format", FORMATS)
def test_rejects_land_beside_the_manifest_and_a_clean_rerun_drops_them(output_format: str, tmp_path: Path) -> None:
    job = table_job(output_format, datasets=("accounts",))
    folder = tmp_path / "tradesync" / "accounts" / f"snapshot_date={DAY1.date()}"
    with tradesync_simulator(sim(1, 300, drift="decimal_na")) as (url, _):
        first = run(job, tmp_path, tradesync_env(url), now=DAY1)
    rejected = first.datasets[0].rejected_rows
    assert rejected > 0
    lines = (folder / "_rejects.jsonl").read_text().splitlines()
    assert len(lines) == rejected and all("problems" in json.loads(line) for line in lines)
    assert manifest_at(tmp_path, "accounts", DAY1)["datasets"]["accounts"]["rejected_rows"] == rejected
    # the rows are in the table all the same, the unconvertible value null
    assert read_table(tmp_path, output_format, "accounts").num_rows == 300
    with tradesync_simulator(sim(1, 300)) as (url, _):
        run(job, tmp_path, tradesync_env(url), now=DAY1)
    assert not (folder / "_rejects.jsonl").exists()  # it described the replaced snapshot
    assert manifest_at(tmp_path, "accounts", DAY1)["datasets"]["accounts"]["rejected_rows"] == 0


def test_the_json_summary_names_each_table_version(tmp_path: Path) -> None:
    job_file = tmp_path / "job.toml"
    job_file.write_text('name = "summary"\nformat = "delta"\n\n[sources.tradesync]\ndatasets = ["accounts"]\n')
    with tradesync_simulator(sim(1, 50)) as (url, _):
        done = subprocess.run([sys.executable, "-m", "exporter", "run", str(job_file), "--output", str(tmp_path / "o"),
                               "--summary", "json"], env=exporter_env(url), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    (dataset,) = json.loads(done.stdout)["datasets"]
    assert dataset["table"] == {"format": "delta", "uri": str((tmp_path / "o" / "tradesync" / "accounts").resolve()),
                                "version": 0}
