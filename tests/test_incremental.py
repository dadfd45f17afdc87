"""Incremental trades: each run fetches only newer ids plus the trades that were open last time."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow.dataset as ds

from exporter.sandbox.tradesync import TradesyncSimConfig, tradesync_simulator

from .helpers import make_job, run, tradesync_env

LATEST = """
SELECT * EXCLUDE (rn) FROM (
  SELECT *, row_number() OVER (PARTITION BY id ORDER BY run_id DESC) AS rn
  FROM read_parquet('{glob}', hive_partitioning = true)
) WHERE rn = 1
"""


def job():
    return make_job({"tradesync": {"datasets": ["trades"], "trades_mode": "incremental", "page_size": 200}},
                    name="incr")


def test_incremental_runs_see_new_trades_and_closes(tmp_path: Path) -> None:
    config = TradesyncSimConfig(accounts=300, trades_per_account=10, rate_limit_rps=0)
    folder = tmp_path / "tradesync" / "trades_incremental"
    with tradesync_simulator(config) as (url, sim):
        env = tradesync_env(url)
        first = run(job(), tmp_path, env)
        state = sim.state()
        first_requests = state["requests_total"]
        expected_first = {t["id"]: t for t in sim.expected_trades()}
        open_before = {i for i, t in expected_first.items() if t["state"] == "open"}
        assert open_before, "the simulator should have open trades at its clock"

        sim.advance(3 * 86_400)  # three days later: new trades, and some open ones closed
        expected_now = {t["id"]: t for t in sim.expected_trades()}
        new_ids = set(expected_now) - set(expected_first)
        closed_since = {i for i in open_before if expected_now[i]["state"] == "closed"}
        assert new_ids and closed_since

        before = sim.state()["requests_total"]
        second = run(job(), tmp_path, env)
        second_requests = sim.state()["requests_total"] - before

    runs = sorted(p.name for p in folder.glob("snapshot_date=*/run_id=*"))
    assert runs == sorted([f"run_id={first.run_id}", f"run_id={second.run_id}"])
    second_part = next(folder.glob(f"snapshot_date=*/run_id={second.run_id}"))
    second_ids = set(ds.dataset(second_part, format="parquet").to_table().column("id").to_pylist())
    # the second run holds the new ids and a refresh of every trade open at the first run, nothing else
    assert second_ids == new_ids | open_before
    assert second_requests < first_requests / 2  # it did not walk the whole history again

    cursor = json.loads((second_part / "_cursor.json").read_text())
    assert cursor["last_id"] == max(expected_now)
    assert set(cursor["open_ids"]) == {i for i, t in expected_now.items() if t["state"] == "open"}

    # the README's query: the latest state of each trade equals the API's current state
    query = LATEST.format(glob=folder / "**" / "*.parquet")
    latest = dict(duckdb.sql(f"SELECT id, state FROM ({query})").fetchall())
    assert set(latest) == set(expected_now)
    assert all(latest[i] == expected_now[i]["state"] for i in latest)
    assert all(latest[i] == "closed" for i in closed_since)
