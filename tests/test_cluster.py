"""A run scaled out on a local Dask cluster (two worker processes): six Tradesync tenants and two
TraderEvolution back offices (simulators in this process, reached by the workers over loopback),
output to the loopback S3 server. The workers read the credentials from their own environment,
set before the cluster starts, the way a real cluster's workers get theirs."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from exporter.errors import ConfigError, ExporterError, JobFileError
from exporter.runner import RunOptions
from exporter.sandbox.traderevolution import TraderEvolutionSimConfig, te_simulator
from exporter.sandbox.tradesync import TradesyncSimConfig, tradesync_simulator

from .helpers import make_job, read_dataset, run
from .s3_helpers import S3Server, s3_server

distributed = pytest.importorskip("distributed")

from exporter.cluster import ClusterOptions, ClusterRun  # noqa: E402

START = datetime(2025, 1, 31, 12, tzinfo=UTC)
TE_WINDOW = {"since": (START - timedelta(days=91)).isoformat(), "until": START.isoformat(), "window_days": 30,
             "operations_window_days": 120, "rps": 0}
TS = {f"ts{i}": {"seed": 10 + i, "accounts": 150 + 70 * i, "trades_per_account": 2 + i % 3,
                 "api_keys": {f"ts{i}-key": f"ts{i}-secret-{i}{i}{i}"}} for i in range(6)}
TE = {f"te{i}": {"seed": 30 + i, "users": 8 + 4 * i, "positions_per_account": 3,
                 "login": f"te{i}-user", "password": f"te{i}-pass-{i}{i}{i}"} for i in range(2)}
# the slow tenant a worker is killed under: enough pages (of 100) for several unit checkpoints
BIG = {"seed": 99, "accounts": 300, "trades_per_account": 25, "latency_ms": 15, "api_keys": {"big-key": "big-secret"}}


@pytest.fixture(scope="module")
def world() -> Iterator[dict[str, Any]]:
    sims: dict[str, Any] = {}
    env: dict[str, str] = {}
    with ExitStack() as stack:
        for name, settings in {**TS, "big": BIG}.items():
            url, sim = stack.enter_context(tradesync_simulator(TradesyncSimConfig(rate_limit_rps=0, **settings)))
            (key, secret), = settings["api_keys"].items()
            prefix = name.upper()
            env |= {f"{prefix}_BASE_URL": url, f"{prefix}_API_KEY": key, f"{prefix}_API_SECRET": secret}
            sims[name] = sim
        for name, settings in TE.items():
            url, sim = stack.enter_context(te_simulator(TraderEvolutionSimConfig(rate_limit_rps=0, sim_start=START,
                                                                                 **settings)))
            prefix = name.upper()
            env |= {f"{prefix}_BASE_URL": url, f"{prefix}_LOGIN": settings["login"],
                    f"{prefix}_PASSWORD": settings["password"]}
            sims[name] = sim
        s3 = stack.enter_context(s3_server())
        env |= s3.env()
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        for key, value in env.items():  # the workers' environment: they are spawned with ours
            patch.setenv(key, value)
        cluster = stack.enter_context(distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None))
        client = stack.enter_context(distributed.Client(cluster))
        yield {"sims": sims, "env": env, "s3": s3, "cluster": cluster, "client": client}


def tenants_job(name: str, **extra: Any) -> Any:
    sources: dict[str, Any] = {n: {"kind": "tradesync", "env_prefix": n.upper(), "concurrency": 4, "page_size": 200}
                               for n in TS}
    sources |= {n: {"kind": "traderevolution", "env_prefix": n.upper(), "concurrency": 4, **TE_WINDOW} for n in TE}
    return make_job(sources, name=name, **extra)


def cluster_run(world: dict[str, Any], job: Any, output: str, **options: Any) -> tuple[ClusterRun, Any]:
    runner = ClusterRun(job, RunOptions(output=output, env=world["env"], **options),
                        ClusterOptions(address=world["cluster"].scheduler_address))
    return runner, asyncio.run(runner.execute())


def rows(table: pa.Table) -> list[dict[str, Any]]:
    """A dataset's rows in a fixed order, without the fetch time (the only column two runs differ in)."""
    keep = [n for n in table.column_names if n not in ("snapshot_at",)]
    return sorted(table.select(keep).to_pylist(), key=lambda r: json.dumps(r, default=str, sort_keys=True))


def assert_exact(output: Path, sims: dict[str, Any], names: list[str]) -> None:
    for name in names:
        sim = sims[name]
        accounts = read_dataset(output, name, "accounts").column("id").to_pylist()
        assert sorted(accounts) == sorted(a["id"] for a in sim.expected_accounts()), name
        if name.startswith("te"):
            operations = read_dataset(output, name, "account_operations").column("id").to_pylist()
            assert sorted(operations) == [o["id"] for o in sim.expected_account_operations()]
        else:
            trades = read_dataset(output, name, "trades").column("id").to_pylist()
            assert sorted(trades) == [t["id"] for t in sim.expected_trades()], name
            assert len(set(trades)) == len(trades)


def test_every_tenant_is_exact_the_same_rows_as_one_process_and_no_secret_travels(
    world: dict[str, Any], tmp_path: Path
) -> None:
    s3: S3Server = world["s3"]
    runner, result = cluster_run(world, tenants_job("fleet"), s3.url("fleet"))
    mirrored = s3.mirror("fleet", tmp_path / "cluster")
    names = [*TS, *TE]
    assert_exact(mirrored, world["sims"], names)
    assert not [k for k in s3.keys("fleet/") if "/_staging/" in k or k.startswith("fleet/_staging")]
    assert s3.pending_uploads("fleet/") == []
    # every (source, stream) ran as its own unit on the cluster
    assert {k.split("/")[0] for k in runner.unit_results} == set(names)
    assert set(runner.unit_results) == set(runner.plans)
    # the single-process run of the same job: the same rows, dataset by dataset
    single = run(tenants_job("fleet"), tmp_path / "single", world["env"])
    assert {(d.source, d.dataset, d.rows) for d in single.datasets} == {
        (d.source, d.dataset, d.rows) for d in result.datasets}
    for d in single.datasets:
        assert rows(read_dataset(tmp_path / "single", d.source, d.dataset)) == rows(
            read_dataset(mirrored, d.source, d.dataset)), (d.source, d.dataset)
    # no secret in any task payload (pickled as Dask sends it): the workers read their own variables
    from distributed.protocol.pickle import dumps

    secrets = [v for k, v in world["env"].items() if k.endswith(("_SECRET", "_PASSWORD", "_API_KEY", "_LOGIN"))
               or k == "AWS_SECRET_ACCESS_KEY"]
    assert len(secrets) >= 6 * 2 + 2 * 2 + 1 and len(runner.plans) >= 8 * 2
    for plan in runner.plans.values():
        payload = dumps(plan) + pickle.dumps(plan)
        for secret in secrets:
            assert secret.encode() not in payload, plan.key
    manifest = json.loads((mirrored / "ts0" / "trades").glob("snapshot_date=*/_manifest.json").__next__().read_text())
    assert manifest["run_id"] == result.run_id and manifest["requests"]["requests"] > 0


def test_a_worker_killed_mid_unit_is_retried_from_the_units_checkpoint(world: dict[str, Any], tmp_path: Path) -> None:
    s3: S3Server = world["s3"]
    client = world["client"]
    job = make_job({"big": {"kind": "tradesync", "env_prefix": "BIG", "concurrency": 2, "page_size": 100,
                            "datasets": ["trades"]}}, name="kill")
    unit_key = "kill/_staging/kill/units/big/trades.json"
    done: dict[str, Any] = {}

    def go() -> None:
        try:
            done["result"] = cluster_run(world, job, s3.url("kill"), checkpoint_rows=500)
        except BaseException as error:  # the assertion below shows it
            done["error"] = error

    thread = threading.Thread(target=go)
    thread.start()
    killed = None
    while thread.is_alive() and killed is None:
        raw = s3.keys("kill/_staging/kill/units/")
        if unit_key in raw:
            body = json.loads(s3.client().get_object(Bucket=s3.bucket, Key=unit_key)["Body"].read())
            if body["datasets"].get("big/trades", {}).get("parts"):  # some rows are checkpointed
                pids = client.run(os.getpid)
                busy = [w for w, keys in client.processing().items() if any("big/trades" in str(k) for k in keys)]
                if busy:
                    killed = pids[busy[0]]
                    os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    thread.join()
    assert killed is not None, "the unit finished before it could be killed: make BIG slower"
    assert "error" not in done, done.get("error")
    runner, result = done["result"]
    # the retried attempt started from the dead one's checkpoint, not from scratch
    assert runner.unit_results["big/trades"]["resumed"] >= 1
    mirrored = s3.mirror("kill", tmp_path / "kill")
    trades = read_dataset(mirrored, "big", "trades").column("id").to_pylist()
    assert sorted(trades) == [t["id"] for t in world["sims"]["big"].expected_trades()]
    assert len(set(trades)) == len(trades) == result.datasets[0].rows
    assert s3.pending_uploads("kill/") == []
    client.wait_for_workers(2)  # the nanny restarted the killed worker: later tests have two again


def test_a_failing_unit_fails_the_run_and_the_rerun_fetches_only_what_is_missing(
    world: dict[str, Any], tmp_path: Path
) -> None:
    s3: S3Server = world["s3"]
    sims = world["sims"]
    job = tenants_job("fail")
    job = replace(job, sources=tuple(replace(s, max_attempts=2, retry_seconds=2.0) for s in job.sources))
    sims["ts3"].config.maintenance = True
    try:
        with pytest.raises(ExporterError) as info:
            cluster_run(world, job, s3.url("fail"))
    finally:
        sims["ts3"].config.maintenance = False
    assert "ts3" in str(info.value)
    assert [k for k in s3.keys("fail/") if "/_staging/" not in k] == []  # nothing published
    checkpoint = json.loads(s3.client().get_object(Bucket=s3.bucket, Key="fail/_staging/fail/checkpoint.json")
                            ["Body"].read())
    finished = {k for k, v in checkpoint["streams"].items() if v.get("done")}
    assert "ts0/accounts" in finished or len(finished) >= 1
    before = {n: sims[n].state()["requests_total"] for n in TS}
    runner, _ = cluster_run(world, job, s3.url("fail"))
    after = {n: sims[n].state()["requests_total"] for n in TS}
    # streams the failed run finished were not fetched again
    for key in finished:
        assert key not in runner.unit_results
    for name in TS:
        if all(f"{name}/{s}" in finished for s in ("accounts", "trades")):
            assert after[name] == before[name], name
    assert after["ts3"] > before["ts3"]
    assert_exact(s3.mirror("fail", tmp_path / "fail"), sims, [*TS, *TE])


def test_a_sources_rate_is_one_budget_for_its_units(world: dict[str, Any], tmp_path: Path) -> None:
    """rps 12 against a limit of 16: a single process stays under it; two units each at 12 would
    ask 24/s. Each gets 6/s, and the simulator answers as few 429s as for one process."""
    config = TradesyncSimConfig(seed=5, accounts=1200, trades_per_account=1, rate_limit_rps=16, rate_limit_burst=3,
                                api_keys={"rl-key": "rl-secret"})
    with tradesync_simulator(config) as (url, sim):
        # a cluster of its own: its workers start with this tenant's variables
        job = make_job({"rl": {"kind": "tradesync", "env_prefix": "RL", "concurrency": 4, "page_size": 100,
                               "rps": 12}}, name="rate")
        env = {"RL_BASE_URL": url, "RL_API_KEY": "rl-key", "RL_API_SECRET": "rl-secret"}
        single = run(job, tmp_path / "single", env)
        single_429 = sim.state()["responses_by_status"].get("429", 0)
        with pytest.MonkeyPatch.context() as patch, distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None, env=env
        ) as cluster:
            for key, value in env.items():
                patch.setenv(key, value)
            runner = ClusterRun(job, RunOptions(output=tmp_path / "cluster"),
                                ClusterOptions(address=cluster.scheduler_address))
            result = asyncio.run(runner.execute())
        cluster_429 = sim.state()["responses_by_status"].get("429", 0) - single_429
    assert sum(p.source.rps or 0 for p in runner.plans.values()) == 12
    assert {p.source.concurrency for p in runner.plans.values()} == {2}
    assert single.datasets[0].rows == result.datasets[0].rows == 1200
    assert cluster_429 <= single_429 + 2, (single_429, cluster_429)


def test_a_local_folder_is_refused_for_a_remote_cluster(tmp_path: Path) -> None:
    job = make_job({"tradesync": {"sandbox": {"accounts": 5}}}, name="far")
    with pytest.raises(ConfigError, match=r"is a local folder, which the workers of tcp://10\.1\.2\.3:8786 cannot "
                                          r"reach: use s3://BUCKET/PREFIX"):
        ClusterRun(job, RunOptions(output=tmp_path), ClusterOptions(address="tcp://10.1.2.3:8786"))
    # a scheduler on loopback, a local cluster, or a folder every worker mounts: accepted
    for options in (ClusterOptions(address="tcp://127.0.0.1:8786"), ClusterOptions(workers=2),
                    ClusterOptions(address="tcp://10.1.2.3:8786", shared_output=True)):
        ClusterRun(job, RunOptions(output=tmp_path), options)
    with pytest.raises(JobFileError, match=r"key 'cluster' must be a Dask scheduler address"):
        make_job({"tradesync": {}}, name="bad", cluster="10.1.2.3")
    assert make_job({"tradesync": {}}, name="ok", cluster="tcp://10.1.2.3:8786").cluster == "tcp://10.1.2.3:8786"


def _cli(tmp_path: Path, *args: str, out: str = "out", code: str = "") -> subprocess.CompletedProcess[str]:
    job = tmp_path / "small.toml"
    job.write_text('name = "small"\n[sources.tradesync]\npage_size = 100\n'
                   '[sources.tradesync.sandbox]\naccounts = 60\ntrades_per_account = 2\nrate_limit_rps = 0\n')
    script = code or ("import sys\nfrom exporter.cli import main\n"
                      "try:\n    main(sys.argv[1:])\nfinally:\n"
                      "    print('dask imported:', 'distributed' in sys.modules or 'dask' in sys.modules, "
                      "file=sys.stderr)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return subprocess.run([sys.executable, "-c", script, "run", str(job), "-o", str(tmp_path / out), *args],
                          capture_output=True, text=True, env=env, timeout=110)


def test_without_workers_or_cluster_dask_is_never_imported(tmp_path: Path) -> None:
    done = _cli(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "dask imported: False" in done.stderr
    assert read_dataset(tmp_path / "out", "tradesync", "accounts").num_rows == 60


def test_workers_flag_runs_a_local_cluster_and_names_its_units(tmp_path: Path) -> None:
    single = _cli(tmp_path, "--summary", "json", out="single")
    done = _cli(tmp_path, "--workers", "2", "--summary", "json")
    assert done.returncode == 0, done.stderr
    assert "dask imported: True" in done.stderr
    counts = [{d["dataset"]: d["rows"] for d in json.loads(p.stdout)["datasets"]} for p in (single, done)]
    assert counts[0] == counts[1] and counts[1]["accounts"] == 60 and counts[1]["trades"] > 60
    for dataset in ("accounts", "trades"):
        assert rows(read_dataset(tmp_path / "single", "tradesync", dataset)) == rows(
            read_dataset(tmp_path / "out", "tradesync", dataset))
    refused = _cli(tmp_path, "--cluster", "tcp://10.1.2.3:8786")
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[0].startswith("error: output ") and "Traceback" not in refused.stderr
    both = _cli(tmp_path, "--workers", "2", "--cluster", "tcp://127.0.0.1:8786")
    assert both.returncode == 2 and "exclude each other" in both.stderr


def test_the_coordinator_killed_then_rerun_resumes_from_the_staging_area(tmp_path: Path) -> None:
    """``exporter run --workers 2`` SIGKILLed with its whole process group (coordinator, scheduler
    and workers: the machine it ran on is gone) once a unit has a checkpoint with part files; the
    same command again resumes the run from the staging area: exact rows, nothing published before,
    and fewer requests than a whole run (what the unit checkpoints held is not fetched again)."""
    config = TradesyncSimConfig(accounts=400, trades_per_account=25, latency_ms=15, rate_limit_rps=0)
    with tradesync_simulator(config) as (url, sim):
        job = tmp_path / "killed.toml"
        job.write_text('name = "killed"\nrows_per_file = 1000\n[sources.tradesync]\npage_size = 100\nconcurrency = 2\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESYNC_")}
        env |= {"TRADESYNC_BASE_URL": url, "TRADESYNC_API_KEY": "sim-key", "TRADESYNC_API_SECRET": "sim-secret",
                "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        command = [sys.executable, "-m", "exporter", "run", str(job), "-o", str(tmp_path / "out"), "--workers", "2"]
        reference = subprocess.run([*command[:5], "-o", str(tmp_path / "whole")], env=env, capture_output=True,
                                   text=True, timeout=180)  # one process: what a whole run asks for
        assert reference.returncode == 0, reference.stderr[-3000:]
        whole = sim.state()["requests_total"]
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   start_new_session=True)
        units = tmp_path / "out" / "_staging" / "killed" / "units"

        def a_unit_has_parts() -> bool:
            for path in units.rglob("*.json"):
                try:
                    state = json.loads(path.read_text())
                except ValueError:
                    continue
                if any(d.get("parts") for d in state.get("datasets", {}).values()):
                    return True
            return False

        deadline = time.monotonic() + 120
        while not a_unit_has_parts():
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no unit checkpoint with parts"
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        assert not list((tmp_path / "out").glob("tradesync/*/snapshot_date=*")), "a killed run published"
        before = sim.state()["requests_total"]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-3000:]
        again = sim.state()["requests_total"] - before
        assert "resumed 1x" in done.stdout, done.stdout
        assert again < whole, (again, whole)
        accounts = read_dataset(tmp_path / "out", "tradesync", "accounts").column("id").to_pylist()
        trades = read_dataset(tmp_path / "out", "tradesync", "trades").column("id").to_pylist()
    assert sorted(accounts) == sorted(a["id"] for a in sim.expected_accounts())
    assert sorted(trades) == [t["id"] for t in sim.expected_trades()] and len(set(trades)) == len(trades)
    assert not (tmp_path / "out" / "_staging" / "killed").exists()
