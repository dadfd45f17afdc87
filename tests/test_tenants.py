"""Many tenants of one API in one job: named sources with their own kind, variables and folders,
against four simulators over loopback (two Tradesync tenants, two TraderEvolution back offices)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from exporter.errors import AuthError, JobFileError
from exporter.sandbox.traderevolution import TraderEvolutionSimConfig, te_simulator
from exporter.sandbox.tradesync import TradesyncSimConfig, tradesync_simulator

from .helpers import make_job, read_dataset, run

START = datetime(2025, 1, 31, 12, tzinfo=UTC)
TE_WINDOW = {"since": (START - timedelta(days=91)).isoformat(), "until": START.isoformat(), "window_days": 30,
             "operations_window_days": 120, "rps": 0}
# name -> (kind, env_prefix, simulator settings): different seeds and sizes, and credentials of
# their own, so a tenant that read another's variables could not pass
TENANTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "eu": ("tradesync", "EU_TS", {"seed": 1, "accounts": 1300, "trades_per_account": 3,
                                  "api_keys": {"eu-key": "eu-secret"}}),
    "asia": ("tradesync", "ASIA_TS", {"seed": 2, "accounts": 700, "trades_per_account": 5,
                                      "api_keys": {"asia-key": "asia-secret"}}),
    "live": ("traderevolution", "LIVE_TE", {"seed": 3, "users": 30, "positions_per_account": 4,
                                            "login": "live-user", "password": "live-pass"}),
    "demo": ("traderevolution", "DEMO_TE", {"seed": 4, "users": 12, "positions_per_account": 6,
                                            "login": "demo-user", "password": "demo-pass"}),
}


def tenant_job(name: str = "tenants") -> Any:
    sources: dict[str, Any] = {}
    for tenant, (kind, prefix, _) in TENANTS.items():
        sources[tenant] = {"kind": kind, "env_prefix": prefix, "concurrency": 4,
                           **(TE_WINDOW if kind == "traderevolution" else {})}
    return make_job(sources, name=name)


@pytest.fixture(scope="module")
def simulators() -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    sims: dict[str, Any] = {}
    env: dict[str, str] = {}
    with ExitStack() as stack:
        for tenant, (kind, prefix, settings) in TENANTS.items():
            if kind == "tradesync":
                url, sim = stack.enter_context(tradesync_simulator(TradesyncSimConfig(rate_limit_rps=0, **settings)))
                (key, secret), = settings["api_keys"].items()
                env |= {f"{prefix}_BASE_URL": url, f"{prefix}_API_KEY": key, f"{prefix}_API_SECRET": secret}
            else:
                config = TraderEvolutionSimConfig(rate_limit_rps=0, sim_start=START, **settings)
                url, sim = stack.enter_context(te_simulator(config))
                env |= {f"{prefix}_BASE_URL": url, f"{prefix}_LOGIN": settings["login"],
                        f"{prefix}_PASSWORD": settings["password"]}
            sims[tenant] = sim
        yield sims, env


@pytest.fixture(scope="module")
def exported(simulators: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    _, env = simulators
    output = tmp_path_factory.mktemp("tenants")
    return output, run(tenant_job(), output, env)


def test_each_tenant_is_exported_exactly_into_its_own_folder(simulators: Any, exported: Any) -> None:
    sims, _ = simulators
    output, result = exported
    assert sorted(p.name for p in output.iterdir() if not p.name.startswith("_")) == sorted(TENANTS)
    for tenant in ("eu", "asia"):
        sim = sims[tenant]
        expected = {a["id"]: a for a in sim.expected_accounts()}
        accounts = read_dataset(output, tenant, "accounts")
        assert sorted(accounts.column("id").to_pylist()) == sorted(expected)
        balances = read_dataset(output, tenant, "balances").to_pylist()
        assert {r["account_id"]: (r["balance"], r["credit"]) for r in balances} == {
            i: (Decimal(str(a["balance"])), Decimal(str(a["credit"]))) for i, a in expected.items()}
        assert {r["source"] for r in balances} == {tenant}
        assert {r["source"] for r in read_dataset(output, tenant, "equity").to_pylist()} == {tenant}
        trades = read_dataset(output, tenant, "trades").column("id").to_pylist()
        assert sorted(trades) == [t["id"] for t in sim.expected_trades()]
    for tenant in ("live", "demo"):
        sim = sims[tenant]
        accounts = read_dataset(output, tenant, "accounts").column("id").to_pylist()
        assert sorted(accounts) == [a["id"] for a in sim.expected_accounts()]
        balances = read_dataset(output, tenant, "balances").to_pylist()
        headers, rows = sim.expected_report("Account Statement Report")
        assert sorted(r["account_id"] for r in balances) == sorted(row[headers.index("accountid")] for row in rows)
        assert {r["source"] for r in balances} == {tenant}
        operations = read_dataset(output, tenant, "account_operations").column("id").to_pylist()
        assert sorted(operations) == [o["id"] for o in sim.expected_account_operations()]
    # the tenants' data differ: nothing of one went into another's folder
    assert set(read_dataset(output, "eu", "accounts").column("account_number").to_pylist()).isdisjoint(
        read_dataset(output, "asia", "accounts").column("account_number").to_pylist())
    assert sorted(result.requests) == sorted(TENANTS)
    assert {(d.source, d.dataset) for d in result.datasets} == {
        (t, d) for t, (kind, _, _) in TENANTS.items()
        for d in (("accounts", "balances", "equity", "trades") if kind == "tradesync"
                  else ("accounts", "balances", "equity", "account_operations", "trades"))}


def test_manifests_name_the_tenant_and_its_api(exported: Any) -> None:
    output, _ = exported
    for tenant, (kind, _, _) in TENANTS.items():
        (manifest,) = (output / tenant / "balances").glob("snapshot_date=*/_manifest.json")
        body = json.loads(manifest.read_text())
        assert body["source"] == tenant and body["source_kind"] == kind
        assert body["requests"]["requests"] > 0
    assert not (output / "_staging" / "tenants" / "checkpoint.json").exists()


def test_a_failing_tenant_publishes_nothing_of_any(simulators: Any, tmp_path: Path) -> None:
    _, env = simulators
    wrong = {**env, "DEMO_TE_PASSWORD": "not-demo-pass-31"}
    with pytest.raises(AuthError) as info:
        run(tenant_job(), tmp_path, wrong)
    message = str(info.value)
    assert message.startswith("sources.demo: ") and "DEMO_TE_LOGIN and DEMO_TE_PASSWORD" in message
    assert "not-demo-pass-31" not in message
    published = [p for p in tmp_path.rglob("*") if p.is_file() and "_staging" not in p.parts]
    assert published == []
    wrong = {**env, "ASIA_TS_API_SECRET": "nope"}
    with pytest.raises(AuthError, match=r"^sources\.asia: .*check ASIA_TS_API_KEY and ASIA_TS_API_SECRET"):
        run(tenant_job(), tmp_path, wrong)
    assert [p for p in tmp_path.rglob("*") if p.is_file() and "_staging" not in p.parts] == []


def test_a_missing_variable_names_the_tenant_and_its_prefix(simulators: Any, tmp_path: Path) -> None:
    _, env = simulators
    partial = {k: v for k, v in env.items() if k != "EU_TS_API_SECRET"}
    with pytest.raises(AuthError, match=r"^sources\.eu: set EU_TS_API_KEY and EU_TS_API_SECRET"):
        run(tenant_job(), tmp_path, partial)
    assert list(tmp_path.rglob("*.parquet")) == []


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        ({"eu": {}}, "[sources.eu]: unknown source (known: tradesync, traderevolution)"),
        ({"eu": {"kind": "ftx"}}, "key 'sources.eu.kind' must be one of tradesync, traderevolution, got 'ftx'"),
        ({"eu": {"kind": "tradesync", "env_prefix": "eu-ts"}}, "key 'sources.eu.env_prefix' must be an environment"),
        ({"a": {"kind": "tradesync"}, "b": {"kind": "tradesync"}},
         "[sources.a] and [sources.b] both read the TRADESYNC_* variables: give each its own env_prefix"),
        ({"tradesync": {}, "eu": {"kind": "tradesync", "env_prefix": "TRADESYNC"}}, "both read the TRADESYNC_*"),
        ({"e/u": {"kind": "tradesync"}}, "key 'sources.<name>': 'e/u' is not a valid name"),
        ({"eu": {"kind": "tradesync", "window_days": 3}}, "unknown key 'sources.eu.window_days'"),
    ],
)
def test_job_file_mistakes_name_the_key(sources: dict[str, Any], message: str) -> None:
    with pytest.raises(JobFileError) as info:
        make_job(sources, name="bad")
    assert message in str(info.value) and str(info.value).startswith("<bad>: ")


def test_sandbox_tenants_of_one_kind_need_no_prefix_and_old_jobs_hash_as_before() -> None:
    job = make_job({"a": {"kind": "tradesync", "sandbox": {}}, "b": {"kind": "tradesync", "sandbox": {}}})
    assert [s.name for s in job.sources] == ["a", "b"]
    plain = make_job({"tradesync": {}}).sources[0]
    # a source named after its kind, on the default variables: the checkpoint fingerprint of before
    assert set(plain.shape()) == {"kind", "datasets", "page_size", "options", "sandbox"}
    named = make_job({"eu": {"kind": "tradesync", "env_prefix": "EU_TS"}}).sources[0]
    assert named.shape()["name"] == "eu" and named.shape()["env_prefix"] == "EU_TS"


def test_the_readmes_tenants_job_is_the_shipped_one() -> None:
    import re
    import tomllib

    from exporter.jobs import load_job
    from exporter.sources import registry

    root = Path(__file__).resolve().parent.parent
    block = re.search(r"## Many tenants.*?```toml\n(.*?)```", (root / "README.md").read_text(), re.S)
    assert block is not None
    shipped = root / "jobs" / "tenants.toml"
    assert tomllib.loads(block.group(1)) == tomllib.loads(shipped.read_text())
    job = load_job(shipped, registry())
    assert [(s.name, s.kind, s.env_prefix) for s in job.sources] == [
        ("eu", "tradesync", "EU_TS"), ("asia", "tradesync", "ASIA_TS"),
        ("live", "traderevolution", "LIVE_TE"), ("demo", "traderevolution", "DEMO_TE")]
