"""jobs/nightly.toml: both sources in one run, and the cross-source query of the README."""

from __future__ import annotations

import dataclasses
from collections import Counter
from decimal import Decimal
from pathlib import Path

import duckdb

from exporter.jobs import load_job
from exporter.sandbox.traderevolution import TraderEvolutionSimConfig, te_simulator
from exporter.sandbox.tradesync import TradesyncSimConfig, tradesync_simulator
from exporter.sources import registry

from .helpers import run, tradesync_env

ROOT = Path(__file__).resolve().parent.parent
SIM_CLOCK = "2025-01-31T12:00:00+00:00"


def test_nightly_runs_both_sources_and_the_cross_source_query_adds_up(tmp_path: Path) -> None:
    # both simulators are unlimited: no pacing (TraderEvolution's rps = 0 would probe up from 1.6/s)
    job = load_job(ROOT / "jobs" / "nightly.toml", registry()).with_overrides(rps=10_000)
    # the simulator's clock is "now" for TraderEvolution's date windows
    sources = tuple(
        dataclasses.replace(s, options={**s.options, "until": SIM_CLOCK}) if s.kind == "traderevolution" else s
        for s in job.sources
    )
    job = dataclasses.replace(job, sources=sources)
    ts_config = TradesyncSimConfig(accounts=3000, trades_per_account=3, rate_limit_rps=0)
    te_config = TraderEvolutionSimConfig(users=150, positions_per_account=4, rate_limit_rps=0)
    with tradesync_simulator(ts_config) as (ts_url, ts_sim), te_simulator(te_config) as (te_url, te_sim):
        env = {
            **tradesync_env(ts_url),
            "TRADEREVOLUTION_BASE_URL": te_url,
            "TRADEREVOLUTION_LOGIN": "sim-user",
            "TRADEREVOLUTION_PASSWORD": "sim-pass",
        }
        result = run(job, tmp_path, env)
        want: Counter = Counter()
        for account in ts_sim.expected_accounts():
            want["tradesync", account["currency"]] += Decimal(str(account["balance"]))
        headers, rows = te_sim.expected_report("Account Statement Report")
        for row in rows:
            cells = dict(zip(headers, row, strict=True))
            want["traderevolution", cells["accountcurrency"]] += Decimal(str(cells["gi.balance"]))
    assert {d.source for d in result.datasets} == {"tradesync", "traderevolution"}
    assert set(result.requests) == {"tradesync", "traderevolution"}
    glob = tmp_path / "*" / "balances" / "**" / "*.parquet"
    got = duckdb.sql(
        f"SELECT source, currency, sum(balance) FROM read_parquet('{glob}', hive_partitioning=true, "
        "union_by_name=true) GROUP BY ALL"
    ).fetchall()
    assert {(s, c): total for s, c, total in got} == dict(want)
    assert len(want) == 6  # three currencies from each source
