"""TraderEvolution's probing pacer against the simulator's per-collection limit and token blocks.

Asserted on counts (requests, 429s, blocks, rows) and on the rates the exporter reports, never on
how long anything took. The limits are high (30/s) and the blocks short, so each test takes a few
seconds; ``bench/rates.py --only te`` measures the same behaviour at R = 10 and 3 from ``rps = 0``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from exporter.http import HttpClient, settled_summary
from exporter.jobs import load_job
from exporter.probing import ProbingPacer
from exporter.sandbox.traderevolution import TraderEvolutionSimConfig, te_simulator
from exporter.sources import Connection, registry
from exporter.sources.traderevolution import decode_records

from .helpers import make_job, read_dataset, run

ROOT = Path(__file__).resolve().parent.parent
SIM_START = datetime(2025, 1, 31, 12, tzinfo=UTC)
SINCE = SIM_START - timedelta(days=90)
R = 30.0  # the simulator's limit per collection
CONCURRENCY = 4


def te_env(base_url: str) -> dict[str, str]:
    return {"TRADEREVOLUTION_BASE_URL": base_url, "TRADEREVOLUTION_LOGIN": "sim-user",
            "TRADEREVOLUTION_PASSWORD": "sim-pass"}


def operations_job(**settings: object):
    # 20 users (~40 accounts) x 3 windows: ~120 /accountOperations requests
    source = {"datasets": ["account_operations"], "concurrency": CONCURRENCY, "since": SINCE.isoformat(),
              "until": SIM_START.isoformat(), "operations_window_days": 30,
              "operations_route": "per_account", **settings}  # a fan-out: many requests to pace
    return make_job({"traderevolution": source}, name="probing")


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def exported_ids(output: Path) -> list[int]:
    return sorted(read_dataset(output, "traderevolution", "account_operations").column("id").to_pylist())


def test_a_rate_above_the_limit_settles_below_it_without_a_block(tmp_path: Path) -> None:
    # the job starts at twice the limit: the bucket (burst R) empties, then 429s
    config = TraderEvolutionSimConfig(users=20, positions_per_account=2, rate_limit_rps=R, blocking_threshold=5,
                                      blocking_duration_s=1)
    with te_simulator(config) as (url, simulator):
        result = run(operations_job(rps=2 * R, block_wait_seconds=30), tmp_path, te_env(url))
        state = simulator.state()
        want = [o["id"] for o in simulator.expected_account_operations(ms(SINCE), ms(SIM_START))]
    stats = result.requests["traderevolution"]
    assert exported_ids(tmp_path) == want
    # a limit was met, and found with a few violations: five within 60 s would have blocked the token
    assert 1 <= state["rate_limited"] <= 4, state
    assert state["blocks_total"] == 0
    # no single violation was taken for a block (that would have paused the source 30 s)
    assert stats["token_blocks"] == 0 and stats["http_429"] == state["rate_limited"]
    # the rate it settled at: below the limit, and near it
    assert stats["rps_limit_met"] == ["accountOperations"]
    assert 0.8 * R <= stats["settled_rps"]["accountOperations"] <= R
    assert "accountOperations" in (settled_summary(stats) or "")


def test_a_blocked_token_is_waited_out_with_single_probes(tmp_path: Path) -> None:
    # the first violation blocks the token; only a probe may go out until the block is over (with
    # 50 ms latency, requests paced at 2R would be on their way before the probe's answer came back)
    config = TraderEvolutionSimConfig(users=20, positions_per_account=2, rate_limit_rps=R, blocking_threshold=1,
                                      blocking_duration_s=1.5, latency_ms=50)
    with te_simulator(config) as (url, simulator):
        result = run(operations_job(rps=2 * R, block_wait_seconds=0.3), tmp_path, te_env(url))
        state = simulator.state()
        want = [o["id"] for o in simulator.expected_account_operations(ms(SINCE), ms(SIM_START))]
    stats = result.requests["traderevolution"]
    assert exported_ids(tmp_path) == want
    assert state["blocks_total"] >= 1 and stats["token_blocks"] >= 1
    # every 429 is the violation that blocked the token, a request already on its way then (at most
    # one per concurrency slot), or a refused probe: the exporter never hammered the blocked token
    assert state["rate_limited"] <= state["blocks_total"] * CONCURRENCY + stats["token_blocks"], (state, stats)
    # cut at the violation (x0.8 of 2R) and again when the probe was refused: it had no measure to go by
    assert stats["rps_limit_met"] == ["accountOperations"]
    assert stats["settled_rps"]["accountOperations"] < 0.8 * 2 * R


def test_rps_0_starts_at_the_documented_safe_rate(tmp_path: Path) -> None:
    job = make_job({"traderevolution": {"datasets": ["accounts"], "rps": 0}}, name="probing")
    assert job.sources[0].rps is None
    with te_simulator(TraderEvolutionSimConfig(users=5, rate_limit_rps=0)) as (url, _):
        result = run(job, tmp_path, te_env(url))
    stats = result.requests["traderevolution"]
    # one request, nothing queued: no reason to climb, and nothing met
    assert stats["settled_rps"] == {"accounts": 1.6} and stats["rps_limit_met"] == []
    assert settled_summary(stats) == "settled rate, to configure as rps: accounts 1.6/s (no limit met)"


def test_the_shipped_jobs_pace_traderevolution_at_1_6_per_second() -> None:
    for name in ("traderevolution.toml", "nightly.toml"):
        job = load_job(ROOT / "jobs" / name, registry())
        (spec,) = [s for s in job.sources if s.kind == "traderevolution"]
        assert spec.rps == 1.6, name

    # a server that allows exactly that (burst 2): any faster pace would draw 429s
    config = TraderEvolutionSimConfig(users=5, rate_limit_rps=1.6, rate_limit_burst=2)
    source = registry()["traderevolution"](spec)
    with te_simulator(config) as (url, simulator):
        connection = Connection(url, {"login": "sim-user", "password": "sim-pass"})
        settings = source.client_settings(connection)
        assert settings.rps == 1.6 and settings.pace_per_collection

        async def six_at_once() -> HttpClient:
            client = HttpClient(settings, auth=source.auth(connection), read_error=source.read_error)
            async with client:
                await asyncio.gather(*(
                    client.request("GET", "/accounts", params={"limit": "1", "offset": str(i)}, decode=decode_records)
                    for i in range(6)
                ))
            return client

        client = asyncio.run(six_at_once())
        state = simulator.state()
    pacer = client.pacers["accounts"]
    assert isinstance(pacer, ProbingPacer)
    # six requests queued for their slots, and the pacer did not go past the configured rate
    assert pacer.rate == pacer.ceiling == 1.6 and not pacer.limit_found
    assert state["rate_limited"] == 0 and state["responses_by_status"] == {"200": 7}  # the login, the six
    assert client.stats.settled() == {"settled_rps": {}, "rps_limit_met": []}
