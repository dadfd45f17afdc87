"""Tradesync ``balance_history``: a fan-out of one dailies list per account, over real loopback HTTP."""

from __future__ import annotations

import base64
import json
import urllib.request
from collections import Counter
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from aiohttp import web

from exporter.errors import IncompleteRun
from exporter.incremental import history_cursor, history_start, seed_history
from exporter.sandbox.tradesync import TradesyncSimConfig, TradesyncSimulator

from .chaos_helpers import serve_with
from .helpers import make_job, read_dataset, run, tradesync_env

AUTH = "Basic " + base64.b64encode(b"sim-key:sim-secret").decode()
SINCE = "2024-12-01"
DECIMALS = ("running_balance", "profit_loss", "running_profit_loss", "running_growth", "lots")


def served(base: str, account: int, since: str) -> list[dict]:
    """The dailies the simulator serves for one account, read straight off the wire (exact decimals)."""
    request = urllib.request.Request(f"{base}/analyses/{account}/dailies?start_date={since}&limit=1000",
                                     headers={"Authorization": AUTH})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.loads(response.read(), parse_float=Decimal, parse_int=Decimal)
    assert body["meta"]["count"] < 1000  # one page: the expectation needs no paging of its own
    return body["data"]


def expected_rows(base: str, accounts: list[int], since: str) -> list[tuple]:
    rows = []
    for account in accounts:
        for item in served(base, account, since):
            rows.append((int(item["account_id"]), date.fromisoformat(item["date"]),
                         *(Decimal(item[n]) for n in DECIMALS)))
    return sorted(rows)


def table_rows(table: pa.Table) -> list[tuple]:
    names = ["account_id", "date", *DECIMALS]
    return sorted(tuple(r[n] for n in names) for r in table.select(names).to_pylist())


@contextmanager
def simulator(config: TradesyncSimConfig, fail_account: int | None = None):
    """The simulator with a counter of requests per path kind, and one account's dailies failing."""
    sim = TradesyncSimulator(config)
    paths: Counter[str] = Counter()

    @web.middleware
    async def count(request: web.Request, handler):
        kind = "dailies" if request.path.endswith("/dailies") else request.path
        paths[kind] += 1
        if fail_account is not None and request.path == f"/analyses/{fail_account}/dailies":
            paths["failed"] += 1
            return web.json_response({"result": "error", "status": 500, "code": "SERVER_ERROR",
                                      "message": "boom"}, status=500)
        return await handler(request)

    with serve_with(sim, count) as base:
        yield base, sim, paths


def history_job(**settings: object):
    source = {"datasets": ["balance_history"], "history_since": SINCE, "concurrency": 4, **settings}
    return make_job({"tradesync": source}, name="history")


def test_rows_are_the_served_dailies_with_one_request_per_account(tmp_path: Path) -> None:
    config = TradesyncSimConfig(accounts=40, trades_per_account=30, rate_limit_rps=0)
    with simulator(config) as (base, sim, paths):
        run(history_job(), tmp_path, tradesync_env(base))
        accounts = [int(a) for a in sim.account_ids()]
        want = expected_rows(base, accounts, SINCE)
    got = read_dataset(tmp_path, "tradesync", "balance_history")
    assert got.schema.field("date").type == pa.date32()
    assert got.schema.field("running_balance").type == pa.decimal128(38, 10)
    assert [n for n in got.column_names if n != "snapshot_date"] == ["source", "account_id", "date", *DECIMALS]
    assert set(got.column("source").to_pylist()) == {"tradesync"}
    assert len(want) > 40 * 30  # days of history for every account, not a handful
    assert table_rows(got) == want
    # one request per account (each history fits a page), plus the /accounts walk (40 ids, one
    # page) and one probe of the highest id (the progress estimate's span)
    assert paths["dailies"] == 40 + 40  # the exporter's 40, and the test's own 40 reads above
    assert paths["/accounts"] == 2


def test_paging_inside_one_account_follows_the_last_id_cursor(tmp_path: Path) -> None:
    config = TradesyncSimConfig(accounts=3, trades_per_account=10, rate_limit_rps=0)
    with simulator(config) as (base, sim, paths):
        run(history_job(page_size=20), tmp_path, tradesync_env(base))
        accounts = [int(a) for a in sim.account_ids()]
        want = expected_rows(base, accounts, SINCE)
    days = Counter(r[0] for r in want)
    # ceil(days / 20) pages per account, and one more when the last page is full
    pages = sum(n // 20 + 1 for n in days.values())
    assert paths["dailies"] - len(accounts) == pages
    assert table_rows(read_dataset(tmp_path, "tradesync", "balance_history")) == want


def test_an_account_that_keeps_failing_fails_the_run_and_the_rerun_fetches_only_it(tmp_path: Path) -> None:
    config = TradesyncSimConfig(accounts=20, trades_per_account=5, rate_limit_rps=0)
    victim = int(TradesyncSimulator(config).account_ids()[7])
    job = history_job(max_attempts=2, retry_seconds=5)
    with simulator(config, fail_account=victim) as (base, _, paths), pytest.raises(IncompleteRun) as info:
        run(job, tmp_path, tradesync_env(base))
    assert str(victim) in str(info.value) and "1 of 20" in str(info.value)
    assert paths["failed"] == 2  # retried, then given up on
    assert not (tmp_path / "tradesync").exists()  # nothing published
    with simulator(config) as (base, sim, paths):
        result = run(job, tmp_path, tradesync_env(base))
        assert dict(paths) == {"dailies": 1}  # the victim's history, nothing else (no /accounts walk)
        want = expected_rows(base, [int(a) for a in sim.account_ids()], SINCE)
    assert result.resumed == 1
    assert table_rows(read_dataset(tmp_path, "tradesync", "balance_history")) == want


def test_history_days_counts_back_from_the_simulators_today(tmp_path: Path) -> None:
    config = TradesyncSimConfig(accounts=5, trades_per_account=5, rate_limit_rps=0)
    job = make_job({"tradesync": {"datasets": ["balance_history"], "history_days": 10,
                                  "sandbox": {"accounts": 5, "trades_per_account": 5, "rate_limit_rps": 0}}})
    run(job, tmp_path, {})
    got = read_dataset(tmp_path, "tradesync", "balance_history")
    today = TradesyncSimulator(config).clock.date()
    assert sorted(set(got.column("date").to_pylist())) == [today - timedelta(days=d) for d in range(9, -1, -1)]


# ---- incremental

LATEST = """
SELECT * EXCLUDE (rn) FROM (
  SELECT *, row_number() OVER (PARTITION BY account_id, date ORDER BY run_id DESC) AS rn
  FROM read_parquet('{glob}', hive_partitioning = true, union_by_name = true)
) WHERE rn = 1
"""


def test_cursor_functions() -> None:
    assert history_start(None, 1) is None
    assert history_start({"last_date": "2025-02-03"}, 1) == date(2025, 2, 3)  # the last day again
    assert history_start({"last_date": "2025-02-03"}, 0) == date(2025, 2, 4)
    assert history_start({"last_date": "2025-02-03"}, 3) == date(2025, 2, 1)
    assert seed_history({"last_date": "2025-02-03"}, 2) == {"since": "2025-02-02", "previous_last_date": "2025-02-03"}
    walk = {"dates": {"2025-02-05": True, "2025-02-04": True}, "previous_last_date": "2025-02-03"}
    assert history_cursor("k", walk) == {"key": "k", "last_date": "2025-02-05"}
    assert history_cursor("k", {"previous_last_date": "2025-02-03"})["last_date"] == "2025-02-03"  # nothing new


def test_incremental_history_fetches_the_new_days_and_the_overlap(tmp_path: Path) -> None:
    config = TradesyncSimConfig(accounts=15, trades_per_account=20, rate_limit_rps=0)
    job = history_job(history_mode="incremental", history_overlap_days=2)
    folder = tmp_path / "tradesync" / "balance_history_incremental"
    with simulator(config) as (base, sim, paths):
        env = tradesync_env(base)
        first = run(job, tmp_path, env)
        first_today = sim.clock.date()
        sim.advance(3 * 86_400)
        paths.clear()
        second = run(job, tmp_path, env)
        requests = dict(paths)
        accounts = [int(a) for a in sim.account_ids()]
        want = expected_rows(base, accounts, SINCE)
    assert requests == {"dailies": len(accounts), "/accounts": 2}  # one page, and the span probe
    second_part = next(folder.glob(f"snapshot_date=*/run_id={second.run_id}"))
    second_rows = table_rows(ds.dataset(second_part, format="parquet").to_table())
    # the overlap (the first run's last 2 days) and the 3 new days, for every account
    new_days = {first_today + timedelta(days=d) for d in range(-1, 4)}
    assert {r[1] for r in second_rows} == new_days
    assert second_rows == [r for r in want if r[1] in new_days]
    cursor = json.loads((second_part / "_cursor.json").read_text())
    assert cursor["last_date"] == (first_today + timedelta(days=3)).isoformat()
    assert cursor["run_id"] == second.run_id != first.run_id
    # the latest row per account and day, across runs, is what the API serves now
    latest = duckdb.sql(LATEST.format(glob=folder / "**" / "*.parquet")).to_arrow_table()
    assert table_rows(latest) == want


# ---- bounded plan: account ids stream in one /accounts page at a time

BIG = TradesyncSimConfig(accounts=3000, trades_per_account=1, rate_limit_rps=0)
OUTER_PAGE = 500


def history_state(streams: dict) -> dict:
    (state,) = [s["walk"] for key, s in streams.items() if "balance_history" in key]
    return state


def held_ids(state: dict) -> int:
    """Account ids the walk state holds: the page in flight (its ids and per-account cursors) and
    the failed accounts."""
    page = state.get("page") or {}
    return len(page.get("ids", [])) + len(page.get("progress", {})) + len(state.get("failed", {}))


def test_the_checkpoint_holds_one_accounts_page_at_most(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from exporter.checkpoint import Checkpoint

    seen: list[tuple[int, int]] = []  # (ids held, accounts closed) at every save
    real_save = Checkpoint.save

    def save(self: Checkpoint) -> None:
        state = history_state(self.streams)
        seen.append((held_ids(state), int(state.get("accounts", 0))))
        real_save(self)

    monkeypatch.setattr(Checkpoint, "save", save)
    with simulator(BIG) as (base, sim, paths):
        run(history_job(page_size=OUTER_PAGE), tmp_path, tradesync_env(base), checkpoint_rows=500)
        accounts = [int(a) for a in sim.account_ids()]
        want = expected_rows(base, accounts, SINCE)
    assert len(accounts) == 3000
    assert len(seen) > 3000 // OUTER_PAGE  # saves all along the walk, not only at its end
    # every page was closed along the way, and no save held more than one page of ids (each
    # id at most twice: listed, and its dailies cursor)
    assert {closed for _, closed in seen} >= set(range(0, 3001, OUTER_PAGE))
    assert max(held for held, _ in seen) <= 2 * OUTER_PAGE
    assert max(held for held, _ in seen) > 0  # the page in flight was checkpointed at all
    assert paths["/accounts"] == 3000 // OUTER_PAGE + 1 + 1  # full pages, the empty last one, the probe
    assert table_rows(read_dataset(tmp_path, "tradesync", "balance_history")) == want


def test_a_kill_mid_run_then_rerun_gives_exact_rows_refetching_only_the_unfinished(tmp_path: Path) -> None:
    from .chaos_helpers import exporter_env, read_checkpoint, run_exporter, start_exporter, write_job

    job = write_job(tmp_path / "history.toml", "history", rows_per_file=1000, datasets=["balance_history"],
                    history_since=SINCE, concurrency=4, page_size=OUTER_PAGE)
    output = tmp_path / "out"
    args = ["run", str(job), "--output", str(output)]
    with simulator(BIG) as (base, sim, paths):
        env = exporter_env(base)
        killed = start_exporter(args, env, kill_point="checkpoint:40")
        _, stderr = killed.communicate(timeout=120)
        assert killed.returncode == -9, stderr
        state = history_state(read_checkpoint(output, "history")["streams"])
        closed, page = int(state.get("accounts", 0)), state.get("page") or {}
        finished = sum(1 for p in page.get("progress", {}).values() if p.get("done"))
        assert 0 < closed < 3000  # killed part-way through the accounts
        assert held_ids(state) <= 2 * OUTER_PAGE
        assert len(json.dumps(state)) < 40_000  # ~500 ids and their cursors, not 3,000
        paths.clear()
        rerun = run_exporter(args, env, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        # only the accounts not finished at the kill: not a closed page's, not the page's done ones
        assert paths["dailies"] == 3000 - closed - finished
        want = expected_rows(base, [int(a) for a in sim.account_ids()], SINCE)
    assert table_rows(read_dataset(output, "tradesync", "balance_history")) == want
