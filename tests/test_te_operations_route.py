"""TraderEvolution account_operations by the operations report or per account, and slow report
windows split in half; over real loopback HTTP against the simulator."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web

from exporter.errors import IncompleteRun
from exporter.sandbox.traderevolution import TraderEvolutionSimConfig, TraderEvolutionSimulator, run_in_thread

from .helpers import read_dataset, run
from .test_traderevolution_export import SIM_START, SINCE, ms, te_env, te_job

OPERATIONS_REPORT = "Account operation report (settled and unsettled)"
# a format with milliseconds: the report's time cells then carry what the JSON list carries
PRECISE = "dd.MM.yyyy HH:mm:ss.SSS"


def _config(**knobs: object) -> TraderEvolutionSimConfig:
    return TraderEvolutionSimConfig(users=40, positions_per_account=3, rate_limit_rps=0,
                                    report_datetime_format=PRECISE, **knobs)


def _manifest(output: Path) -> dict:
    partition = next((output / "traderevolution" / "account_operations").glob("snapshot_date=*"))
    return json.loads((partition / "_manifest.json").read_text())


def _job(**settings: object):
    base = {"datasets": ["account_operations"], "report_datetime_format": PRECISE, "operations_route": "auto"}
    return te_job(**{**base, **settings})


class Recorder:
    """Counts the requests of each path, and each distinct window the operations report ran."""

    def __init__(self) -> None:
        self.paths: Counter[str] = Counter()
        self.windows: set[tuple[str, str]] = set()

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        tail = request.path.removeprefix("/proftrading/rest")
        self.paths[tail] += 1
        if tail == "/reports/150":
            self.windows.add((request.query.get("startDate", ""), request.query.get("endDate", "")))
        return await handler(request)


def _export(config: TraderEvolutionSimConfig, output: Path, **settings: object):
    simulator = TraderEvolutionSimulator(config)
    recorder = Recorder()
    app = simulator.make_app()
    app.middlewares.append(recorder.middleware)
    with run_in_thread(app) as root:
        result = run(_job(**settings), output, te_env(root + "/proftrading/rest"))
    return result, recorder, simulator


def test_both_routes_give_identical_tables(tmp_path: Path) -> None:
    _, by_report, simulator = _export(_config(), tmp_path / "report")
    _, per_account, _ = _export(_config(), tmp_path / "per_account", operations_route="per_account")
    report = read_dataset(tmp_path / "report", "traderevolution", "account_operations").sort_by("id")
    fanned = read_dataset(tmp_path / "per_account", "traderevolution", "account_operations").sort_by("id")
    want = simulator.expected_account_operations(ms(SINCE), ms(SIM_START))
    assert report.num_rows == len(want) > 100
    assert report.schema == fanned.schema  # same columns, same types
    assert report.to_pylist() == fanned.to_pylist()  # same rows, same values (nulls included)
    # both kinds of row are there: trading rows with order/trade ids, cash rows with nulls
    assert {r["operation_type_id"] for r in report.to_pylist()} >= {1, 2}
    assert any(r["trade_id"] is None for r in report.to_pylist())
    # the report walk costs pages, the fan-out a request per account
    accounts = len(simulator.expected_accounts())
    assert per_account.paths["/accountOperations"] == accounts
    assert by_report.paths["/reports/150"] < accounts / 4
    assert by_report.paths["/accountOperations"] == 0
    settings = _manifest(tmp_path / "report")["source_settings"]
    assert settings["operations_route"] == "report" and OPERATIONS_REPORT in settings["operations_route_why"]
    assert _manifest(tmp_path / "per_account")["source_settings"]["operations_route"] == "per_account"


def test_auto_falls_back_per_account_when_the_report_is_hidden(tmp_path: Path) -> None:
    _, recorder, simulator = _export(_config(hidden_reports=(OPERATIONS_REPORT,)), tmp_path)
    got = read_dataset(tmp_path, "traderevolution", "account_operations")
    assert sorted(got.column("id").to_pylist()) == [o["id"] for o in simulator.expected_account_operations()]
    assert recorder.paths["/reports/150"] == 0
    assert recorder.paths["/accountOperations"] == len(simulator.expected_accounts())
    settings = _manifest(tmp_path)["source_settings"]
    assert settings["operations_route"] == "per_account" and "does not list" in settings["operations_route_why"]


def test_a_window_answering_504_is_split_until_its_halves_answer(tmp_path: Path) -> None:
    # one 100-day window of every operation; the server refuses any window of more than 60 rows
    config = _config(report_max_window_rows=60)
    result, recorder, simulator = _export(config, tmp_path, operations_report_window_days=100, report_attempts=2,
                                          max_attempts=2)
    want = simulator.expected_account_operations(ms(SINCE), ms(SIM_START))
    assert len(want) > 4 * 60  # at least three levels of halving
    got = read_dataset(tmp_path, "traderevolution", "account_operations")
    assert sorted(got.column("id").to_pylist()) == [o["id"] for o in want]  # no row lost, none twice
    assert len(recorder.windows) > 8  # the one planned window became many
    assert result.requests["traderevolution"]["errors"].get("http_504", 0) >= 2


def test_a_window_that_cannot_be_split_further_fails_the_run_and_publishes_nothing(tmp_path: Path) -> None:
    with pytest.raises(IncompleteRun):
        _export(_config(report_max_window_rows=60), tmp_path, operations_report_window_days=100,
                report_attempts=1, max_attempts=1, report_split_depth=1)
    assert not (tmp_path / "traderevolution").exists()


def test_trades_report_windows_are_split_too(tmp_path: Path) -> None:
    config = _config(report_max_window_rows=80)
    simulator = TraderEvolutionSimulator(config)
    app = simulator.make_app()
    with run_in_thread(app) as root:
        run(te_job(datasets=["trades"], window_days=100, report_attempts=1, max_attempts=1,
                   report_datetime_format=PRECISE), tmp_path, te_env(root + "/proftrading/rest"))
    headers, rows = simulator.expected_report("Trades Report", ms(SINCE), ms(SIM_START))
    assert len(rows) > 4 * 80
    got = read_dataset(tmp_path, "traderevolution", "trades")
    column = headers.index("tradeid")
    assert sorted(got.column("tradeid").to_pylist()) == sorted(row[column] for row in rows)


def test_a_report_slower_than_its_timeout_is_split(tmp_path: Path) -> None:
    # latency grows with the window's rows: the whole window takes ~3 s, more than the 1 s the
    # job allows a report; halves of it answer sooner (any still too slow are halved again)
    rows = len(TraderEvolutionSimulator(_config()).expected_account_operations(ms(SINCE), ms(SIM_START)))
    config = _config(report_window_latency_ms_per_1000_rows=3_000_000 / rows)
    result, recorder, simulator = _export(config, tmp_path, operations_report_window_days=100,
                                          report_timeout_seconds=1, report_attempts=1, report_split_depth=8)
    got = read_dataset(tmp_path, "traderevolution", "account_operations")
    want = simulator.expected_account_operations(ms(SINCE), ms(SIM_START))
    assert sorted(got.column("id").to_pylist()) == [o["id"] for o in want]
    assert len(recorder.windows) >= 3  # the window and at least its two halves
    assert sum(n for kind, n in result.requests["traderevolution"]["errors"].items() if "Timeout" in kind) >= 1
