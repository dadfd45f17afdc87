"""End to end against the TraderEvolution simulator over real loopback HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from exporter.sandbox.traderevolution import ALL_FAULTS, TraderEvolutionSimConfig, new_column_value, te_simulator
from exporter.schema import sanitize_column_names

from .helpers import make_job, read_dataset, run

SIM_START = datetime(2025, 1, 31, 12, tzinfo=UTC)
SINCE = SIM_START - timedelta(days=90)
UNPACED = 10_000  # requests per second: no pacing worth the name


def te_env(base_url: str, password: str = "sim-pass") -> dict[str, str]:
    return {
        "TRADEREVOLUTION_BASE_URL": base_url,
        "TRADEREVOLUTION_LOGIN": "sim-user",
        "TRADEREVOLUTION_PASSWORD": password,
    }


def te_job(**settings: object):
    source = {
        "concurrency": 8,
        # the simulators here have no rate limit; rps = 0 would start at 1.6/s and climb (probing)
        "rps": UNPACED,
        "since": SINCE.isoformat(),
        "until": SIM_START.isoformat(),
        "window_days": 30,
        "operations_window_days": 120,
        # these tests are about the per-account fan-out; the report route: test_te_operations_route.py
        "operations_route": "per_account",
        **settings,
    }
    return make_job({"traderevolution": source}, name="te")


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def by_key(rows: list[dict], key: str, drop: tuple[str, ...] = ("snapshot_at", "snapshot_date")) -> list[dict]:
    return sorted(({k: v for k, v in r.items() if k not in drop} for r in rows), key=lambda r: r[key])


def parse_report_time(text: str) -> datetime:
    return datetime.strptime(text, "%d.%m.%Y %H:%M:%S").replace(tzinfo=UTC)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory):
    """A ~2,000-account export of every dataset, and the simulator's own data to compare with."""
    output = tmp_path_factory.mktemp("te-clean")
    config = TraderEvolutionSimConfig(users=1000, positions_per_account=3, rate_limit_rps=0)
    with te_simulator(config) as (url, simulator):
        result = run(te_job(), output, te_env(url))
        expected = {
            "accounts": simulator.expected_accounts(),
            "operations": simulator.expected_account_operations(ms(SINCE), ms(SIM_START)),
            "all_operations": simulator.expected_account_operations(),
            "statement": simulator.expected_report("Account Statement Report"),
            "trades": simulator.expected_report("Trades Report", ms(SINCE), ms(SIM_START)),
            "state": simulator.state(),
        }
    return output, result, expected


def test_accounts_equal_the_simulator(clean) -> None:
    output, _, expected = clean
    got = by_key(read_dataset(output, "traderevolution", "accounts").to_pylist(), "id")
    want = expected["accounts"]
    assert len(want) >= 1900  # the fan-out below really covers ~2,000 accounts
    assert [r["id"] for r in got] == [a["id"] for a in want]
    for row, acc in zip(got, want, strict=True):
        assert row["account_name"] == acc["accountName"] and row["user_id"] == acc["userId"]
        assert row["currency"] == acc["currency"] and row["mode"] == acc["mode"] and row["status"] == acc["status"]
        assert row["created_at"] == datetime.fromtimestamp(acc["createdAt"] / 1000, UTC)


def test_operations_fan_out_equals_the_simulator(clean) -> None:
    output, result, expected = clean
    got = by_key(read_dataset(output, "traderevolution", "account_operations").to_pylist(), "id")
    want = expected["operations"]
    assert len(want) == len(expected["all_operations"])  # the date windows cover the whole history
    assert [r["id"] for r in got] == [o["id"] for o in want]
    for row, op in zip(got, want, strict=True):
        assert row["account_id"] == op["accountId"]
        assert row["amount"] == Decimal(op["amount"]) and row["balance"] == Decimal(op["balance"])
        assert row["operation_type_id"] == op["operationTypeId"]
        assert row["trade_id"] == op["tradeId"]
    requests = result.requests["traderevolution"]["requests"]
    assert requests >= len(expected["accounts"])  # one request (at least) per account: a real fan-out


def test_balances_and_equity_map_the_statement_report(clean) -> None:
    output, _, expected = clean
    headers, rows = expected["statement"]
    names = sanitize_column_names(headers)
    want = {r[headers.index("accountid")]: dict(zip(names, r, strict=True)) for r in rows}
    balances = read_dataset(output, "traderevolution", "balances")
    assert balances.column_names[:6] == ["snapshot_at", "source", "account_id", "currency", "balance", "credit"]
    got = balances.to_pylist()
    assert len(got) == len(want)
    for row in got:
        exp = want[row["account_id"]]
        assert row["balance"] == Decimal(exp["gi_balance"]) and row["credit"] == Decimal(exp["credit_value"])
        assert row["currency"] == exp["accountcurrency"] and row["source"] == "traderevolution"
        assert row["te_waived_margin"] is None  # "N/A" became null ...
    equity = read_dataset(output, "traderevolution", "equity").to_pylist()
    for row in equity:
        exp = want[row["account_id"]]
        assert row["equity"] == Decimal(exp["gi_cur_balance"])
        assert row["used_margin"] == Decimal(exp["gi_margin_used"])
        assert row["free_margin"] == Decimal(exp["gi_available_margin"])
        assert row["open_trades"] is None and row["daily_profit"] is None
    manifest = _manifest(output, "balances")
    assert manifest["datasets"]["balances"]["null_tokens"] == {"te_waived_margin": len(want)}  # ... counted as written


def test_trades_report_windows_equal_the_simulator(clean) -> None:
    output, _, expected = clean
    headers, rows = expected["trades"]
    names = sanitize_column_names(headers)
    want = sorted((dict(zip(names, r, strict=True)) for r in rows), key=lambda r: r["tradeid"])
    got = by_key(read_dataset(output, "traderevolution", "trades").to_pylist(), "tradeid")
    assert len(want) > 5000
    assert [r["tradeid"] for r in got] == [r["tradeid"] for r in want]
    for row, exp in zip(got, want, strict=True):
        assert row["time"] == parse_report_time(exp["time"])
        assert row["price"] == Decimal(exp["price"]) and row["profit"] == Decimal(exp["profit"])
        assert row["operation"] == exp["operation"] and row["account"] == exp["account"]


def test_faults_give_the_same_rows_and_concurrency_stays_bounded(clean, tmp_path: Path) -> None:
    clean_output, *_ = clean
    # no injected 429s: to TraderEvolution's probing pacer every 429 is a violation (it slows down and
    # probes, as tests/test_te_probing.py checks); random ones would only make this test slow
    config = TraderEvolutionSimConfig(
        users=1000, positions_per_account=3, rate_limit_rps=0, error_rate=0.1,
        fault_kinds=tuple(k for k in ALL_FAULTS if k != "429"), latency_ms=2,
    )
    with te_simulator(config) as (url, simulator):
        job = te_job(concurrency=5, max_attempts=30, block_wait_seconds=0.05)
        result = run(job, tmp_path, te_env(url))
        state = simulator.state()
    assert state["faults_injected"] > 50
    assert 2 <= state["peak_in_flight"] <= 5  # bounded by the job's concurrency, and actually concurrent
    assert result.requests["traderevolution"]["retries"] > 50
    for dataset, key in (("accounts", "id"), ("account_operations", "id"), ("trades", "tradeid"),
                         ("balances", "account_id")):
        clean_rows = by_key(read_dataset(clean_output, "traderevolution", dataset).to_pylist(), key)
        faulty_rows = by_key(read_dataset(tmp_path, "traderevolution", dataset).to_pylist(), key)
        assert faulty_rows == clean_rows, dataset


def test_token_expiring_mid_run_is_refreshed(tmp_path: Path) -> None:
    config = TraderEvolutionSimConfig(users=60, positions_per_account=2, rate_limit_rps=0, access_ttl_s=1.0,
                                      latency_ms=15)
    with te_simulator(config) as (url, simulator):
        run(te_job(concurrency=2, datasets=["accounts", "account_operations"], operations_window_days=20),
            tmp_path, te_env(url))
        state = simulator.state()
        want = simulator.expected_account_operations(ms(SINCE), ms(SIM_START))
    # every answer sleeps 15 ms and at most peak_in_flight overlap, so however fast the machine, the run
    # lasted at least this long: several access-token lifetimes (no timing luck involved)
    assert state["requests_total"] * 0.015 / state["peak_in_flight"] > 3 * config.access_ttl_s
    assert state["refreshes"] + state["logins"] >= 3
    got = read_dataset(tmp_path, "traderevolution", "account_operations")
    assert sorted(got.column("id").to_pylist()) == [o["id"] for o in want]


def test_token_block_is_waited_out_and_rows_are_exact(tmp_path: Path) -> None:
    # the job paces faster than the server allows: violations, a blocked token, then adaptation
    config = TraderEvolutionSimConfig(users=20, positions_per_account=2, rate_limit_rps=20, rate_limit_burst=2,
                                      blocking_threshold=3, blocking_duration_s=1)
    with te_simulator(config) as (url, simulator):
        result = run(te_job(concurrency=6, rps=30, datasets=["account_operations"], block_wait_seconds=1.1,
                            operations_window_days=15), tmp_path, te_env(url))
        state = simulator.state()
        want = simulator.expected_account_operations(ms(SINCE), ms(SIM_START))
    assert state["responses_by_status"].get("429", state["responses_by_status"].get(429, 0)) > 0
    assert result.requests["traderevolution"]["http_429"] > 0
    got = read_dataset(tmp_path, "traderevolution", "account_operations")
    assert sorted(got.column("id").to_pylist()) == [o["id"] for o in want]


def test_bad_login_exits_3_with_one_clear_line(tmp_path: Path) -> None:
    job_file = tmp_path / "te.toml"
    job_file.write_text('name = "te"\n[sources.traderevolution]\ndatasets = ["accounts"]\n')
    with te_simulator(TraderEvolutionSimConfig(users=5, rate_limit_rps=0)) as (url, _):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEREVOLUTION_")}
        env.update(te_env(url, password="not-the-password-77"))
        proc = subprocess.run([sys.executable, "-m", "exporter.cli", "run", str(job_file), "-o", str(tmp_path / "o")],
                              capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 3
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "1.2.0.11" in errors[0] and "wrong login or password" in errors[0], proc.stderr
    assert "not-the-password-77" not in proc.stderr + proc.stdout
    assert not (tmp_path / "o" / "traderevolution").exists()


def _manifest(output: Path, dataset: str) -> dict:
    import json

    partition = next((output / "traderevolution" / dataset).glob("snapshot_date=*"))
    return json.loads((partition / "_manifest.json").read_text())


def test_an_account_that_keeps_failing_is_named_and_retried_on_rerun(tmp_path: Path) -> None:
    from aiohttp import web

    from exporter.errors import IncompleteRun
    from exporter.sandbox.traderevolution import TraderEvolutionSimulator, run_in_thread

    config = TraderEvolutionSimConfig(users=30, positions_per_account=2, rate_limit_rps=0)
    simulator = TraderEvolutionSimulator(config)
    victim = str(simulator.expected_accounts()[7]["id"])
    hits = Counter()

    @web.middleware
    async def broken_account(request: web.Request, handler):
        if request.query.get("accountId") == victim:
            hits[victim] += 1
            return web.json_response({"errors": ["9.0.0.500"]}, status=500)
        return await handler(request)

    app = simulator.make_app()
    app.middlewares.append(broken_account)
    job = te_job(datasets=["account_operations"], max_attempts=3, operations_window_days=200)
    with run_in_thread(app) as root, pytest.raises(IncompleteRun) as info:
        run(job, tmp_path, te_env(root + "/proftrading/rest"))
    assert victim in str(info.value) and "1 of" in str(info.value)
    assert hits[victim] == 3  # retried, then given up on
    assert not (tmp_path / "traderevolution").exists()  # nothing half-published
    # the account recovers: the rerun resumes, fetches only what is missing, and publishes everything
    with te_simulator(config) as (url, fresh):
        result = run(job, tmp_path, te_env(url))
        want = fresh.expected_account_operations(ms(SINCE), ms(SIM_START))
        assert fresh.state()["requests_total"] <= 3  # login and the victim's one window, nothing refetched
    assert result.resumed == 1
    got = read_dataset(tmp_path, "traderevolution", "account_operations")
    assert sorted(got.column("id").to_pylist()) == [o["id"] for o in want]


# how the drift column's cells are served -> its form, and the manifest's reason when it is text
NEW_COLUMN_FORMS = {
    "number": ("decimal128(38, 2)", None),
    "text": ("decimal128(38, 2)", None),  # numbers pre-formatted as text, and "N/A": nulls
    "label": ("string", "cells mix numbers and text"),
}


def new_column_expected(row_number: int, cells: str) -> Decimal | str | None:
    """What the column must hold for the cell the simulator serves in that row."""
    value = new_column_value(row_number, cells)
    if cells == "label":
        return value if isinstance(value, str) else str(value)
    return None if value == "N/A" else Decimal(value)


@pytest.mark.parametrize("cells", sorted(NEW_COLUMN_FORMS))
def test_a_report_column_the_contract_lacks_is_kept_and_listed_in_each_manifest(tmp_path: Path, cells: str) -> None:
    # every report run serves one more column, `riskscore`; balances and equity carry statement
    # columns as te_<name>, trades keep report names, so the manifests list it under those names
    config = TraderEvolutionSimConfig(users=30, positions_per_account=3, rate_limit_rps=0, report_new_column=True,
                                      report_new_column_cells=cells)
    form, why = NEW_COLUMN_FORMS[cells]
    with te_simulator(config) as (url, simulator):
        run(te_job(datasets=["accounts", "balances", "equity", "trades"]), tmp_path, te_env(url))
        headers, statement = simulator.expected_report("Account Statement Report")
    row_of_account = {row[headers.index("accountid")]: k for k, row in enumerate(statement)}

    def manifests(dataset: str) -> list[dict]:
        found = sorted((tmp_path / "traderevolution" / dataset).rglob("_manifest.json"))
        assert found, dataset
        return [json.loads(path.read_text())["datasets"][dataset] for path in found]

    for dataset in ("balances", "equity"):
        table = read_dataset(tmp_path, "traderevolution", dataset)
        assert table.num_rows == len(statement) > 30
        assert str(table.schema.field("te_riskscore").type) == form
        values = dict(zip(table.column("account_id").to_pylist(), table.column("te_riskscore").to_pylist(),
                          strict=True))
        # kept exactly as served: the value in the statement row of that account
        assert values == {a: new_column_expected(k, cells) for a, k in row_of_account.items()}
        (meta,) = manifests(dataset)
        assert meta["unknown_fields"] == {"te_riskscore": len(statement)}
        assert meta["drift_types"] == {"te_riskscore": form}
        assert meta["drift_fallbacks"] == ({"te_riskscore": why} if why else {})
        tokens = sum(new_column_value(k, cells) == "N/A" for k in row_of_account.values())
        assert meta["null_tokens"].get("te_riskscore", 0) == tokens and (tokens > 0) == (cells == "text")
    trades = read_dataset(tmp_path, "traderevolution", "trades")
    assert trades.num_rows > 100
    assert str(trades.schema.field("riskscore").type) == form
    assert (trades.column("riskscore").null_count > 0) == (cells == "text")  # "N/A" cells only
    labels = [v for v in trades.column("riskscore").to_pylist() if isinstance(v, str) and v.startswith("band ")]
    assert (len(labels) > 0) == (cells == "label")
    listed = Counter()
    for meta in manifests("trades"):
        listed.update(meta["unknown_fields"])
        assert meta["drift_types"] == {"riskscore": form}
    assert listed == {"riskscore": trades.num_rows}
    assert all(m["unknown_fields"] == {} for m in manifests("accounts"))  # accounts are no report
