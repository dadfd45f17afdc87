"""Output to S3-compatible object storage (moto's S3 server over loopback HTTP), and the run lease.

Every test compares with one clean local run of the same job against the same simulator."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from exporter.sandbox._sim_base import run_simulator_in_thread
from exporter.sandbox.tradesync import TradesyncSimConfig, TradesyncSimulator

from .chaos_helpers import (
    dataset_rows,
    error_lines,
    exporter_env,
    run_exporter,
    serve_with,
    start_exporter,
    wait_for,
    write_job,
)
from .s3_helpers import CREDENTIALS, FaultPlan, S3Server, fault_proxy, s3_server

JOB = "s3job"
DATASETS = ("accounts", "balances", "equity", "trades")
CONFIG = TradesyncSimConfig(accounts=3000, trades_per_account=3, rate_limit_rps=0)


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[str, TradesyncSimulator]]:
    simulator = TradesyncSimulator(CONFIG)
    with run_simulator_in_thread(simulator.make_app) as url:
        yield url, simulator


@pytest.fixture(scope="module")
def job_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = write_job(tmp_path_factory.mktemp("job") / f"{JOB}.toml", JOB, rows_per_file=2000,
                     concurrency=4, page_size=500)
    path.write_text(path.read_text().replace("[sources.tradesync]", "lease_ttl_seconds = 2\n\n[sources.tradesync]"))
    return path


@pytest.fixture(scope="module")
def expected(api: tuple[str, TradesyncSimulator], job_file: Path,
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    output = tmp_path_factory.mktemp("clean")
    done = run_exporter(["run", str(job_file), "--output", str(output)], exporter_env(api[0]))
    assert done.returncode == 0, done.stderr
    return {d: dataset_rows(output, d) for d in DATASETS}


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


def export(job_file: Path, url: str, env: dict[str, str]) -> str:
    done = run_exporter(["run", str(job_file), "--output", url], env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def partition_files(s3: S3Server, prefix: str, dataset: str) -> dict[str, int]:
    found = s3.keys(f"{prefix}/tradesync/{dataset}/")
    return {key.rsplit("/", 1)[1]: size for key, size in found.items()}


def test_export_to_s3_is_exact_and_a_rerun_leaves_nothing_of_the_one_before(
    api: tuple[str, TradesyncSimulator], job_file: Path, expected: dict[str, list[dict]], s3: S3Server,
    tmp_path: Path,
) -> None:
    env = exporter_env(api[0]) | s3.env()
    printed = export(job_file, s3.url("nightly"), env)
    first = {d: partition_files(s3, "nightly", d) for d in DATASETS}
    printed += export(job_file, s3.url("nightly"), env)  # the same date again: replaces it
    root = s3.mirror("nightly/", tmp_path / "mirror")
    for dataset in DATASETS:
        assert dataset_rows(root, dataset) == expected[dataset], dataset
        (partition,) = (root / "tradesync" / dataset).glob("snapshot_date=*")
        manifest = json.loads((partition / "_manifest.json").read_text())
        listed = {f["name"]: f["bytes"] for f in manifest["datasets"][dataset]["files"]}
        now = partition_files(s3, "nightly", dataset)
        # exactly the files its manifest lists, with their sizes: nothing of the first run
        assert {k: v for k, v in now.items() if k.endswith(".parquet")} == listed
        assert not set(first[dataset]) - {"_manifest.json"} & set(now)
        assert all(manifest["run_id"] in name for name in listed)
    assert s3.keys("nightly/_staging/") == {}
    assert s3.pending_uploads("nightly/") == []
    # no secret anywhere: not in what the runs printed, not in any object
    everything = printed.encode() + b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())
    assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"].encode() not in everything
    assert b"sim-secret" not in everything


def test_a_killed_run_shows_nothing_and_the_rerun_resumes_it_exactly(
    api: tuple[str, TradesyncSimulator], job_file: Path, expected: dict[str, list[dict]], s3: S3Server,
    tmp_path: Path,
) -> None:
    """Part files are multipart uploads pending at their final keys: after a SIGKILL mid-run, a
    listing shows only the previous snapshot; the rerun resumes and aborts the orphaned upload."""
    env = exporter_env(api[0]) | s3.env()
    export(job_file, s3.url("killed"), env)
    before = s3.keys("killed/tradesync/")
    for k in (3, 9):
        process = start_exporter(["run", str(job_file), "--output", s3.url("killed")], env, kill_point=f"write:{k}")
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == -signal.SIGKILL, stderr[-2000:]
        assert s3.keys("killed/tradesync/") == before, "a killed run made something visible"
        assert s3.pending_uploads("killed/tradesync/"), "the kill did not land mid upload"
        checkpoint = json.loads(s3.client().get_object(Bucket=s3.bucket, Key=f"killed/_staging/{JOB}/checkpoint.json")
                                ["Body"].read())
        assert checkpoint["run_id"]
        wait_for_lease_expiry(s3, "killed")
    out = export(job_file, s3.url("killed"), env)
    assert "resumed 2x" in out
    root = s3.mirror("killed/", tmp_path / "mirror")
    for dataset in DATASETS:
        assert dataset_rows(root, dataset) == expected[dataset], dataset
    assert s3.pending_uploads("killed/") == []
    assert s3.keys("killed/_staging/") == {}


def wait_for_lease_expiry(s3: S3Server, prefix: str) -> None:
    import time
    from email.utils import parsedate_to_datetime

    client = s3.client()
    while True:
        try:
            head = client.head_object(Bucket=s3.bucket, Key=f"{prefix}/_staging/{JOB}.lease")
        except client.exceptions.ClientError:
            return
        now = parsedate_to_datetime(head["ResponseMetadata"]["HTTPHeaders"]["date"])
        if (now - head["LastModified"]).total_seconds() > 2:
            return
        time.sleep(0.2)


def test_s3_errors_are_retried_and_nothing_is_lost(
    api: tuple[str, TradesyncSimulator], job_file: Path, expected: dict[str, list[dict]], s3: S3Server,
    tmp_path: Path,
) -> None:
    plan = FaultPlan(rate=0.12)
    with fault_proxy(s3.endpoint, plan) as proxy:
        export(job_file, s3.url("faulty"), exporter_env(api[0]) | s3.env(endpoint=proxy))
    assert plan.injected["503"] >= 2 and plan.injected["500"] >= 2 and plan.injected["drop"] >= 2, plan.injected
    root = s3.mirror("faulty/", tmp_path / "mirror")
    for dataset in DATASETS:
        assert dataset_rows(root, dataset) == expected[dataset], dataset
    assert s3.pending_uploads("faulty/") == []


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_second_run_of_the_same_job_is_refused_with_exit_4_and_touches_nothing(
    where: str, job_file: Path, expected: dict[str, list[dict]], s3: S3Server, tmp_path: Path
) -> None:
    # the first run is held mid-walk (its 6th request waits for the gate) while the second one starts
    gate, held = threading.Event(), threading.Event()
    simulator = TradesyncSimulator(CONFIG)

    @web.middleware
    async def hold(request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith("/_sim") and simulator.state()["requests_total"] >= 5:
            held.set()
            await asyncio.get_running_loop().run_in_executor(None, gate.wait, 120)
        return await handler(request)

    with serve_with(simulator, hold) as url:
        env = exporter_env(url) | s3.env()
        output = s3.url("overlap") if where == "s3" else str(tmp_path / "out")
        first = start_exporter(["run", str(job_file), "--output", output], env)
        wait_for(held.is_set, timeout=60, what="the first run to be held mid-walk", process=first)
        second = run_exporter(["run", str(job_file), "--output", output], env)
        gate.set()
        _, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
    assert second.returncode == 4, second.stderr
    lines = error_lines(second.stderr)
    assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
    assert f"job '{JOB}' is already running" in lines[0]
    assert f"host {socket.gethostname()}, pid {first.pid}, run 2" in lines[0], lines[0]
    assert "since" in lines[0] and "touched nothing" in lines[0]
    root = s3.mirror("overlap/", tmp_path / "mirror") if where == "s3" else tmp_path / "out"
    for dataset in DATASETS:
        assert dataset_rows(root, dataset) == expected[dataset], dataset


def test_an_expired_lease_of_a_dead_run_is_taken_over_and_a_live_one_is_not(
    api: tuple[str, TradesyncSimulator], job_file: Path, expected: dict[str, list[dict]], s3: S3Server,
    tmp_path: Path,
) -> None:
    client = s3.client()
    holder = {"job": JOB, "host": "gone-host", "pid": 4242, "run_id": "20260101T000000000000Z-dead00",
              "since": "2026-01-01T00:00:00+00:00", "ttl_seconds": 2}
    client.put_object(Bucket=s3.bucket, Key=f"stale/_staging/{JOB}.lease", Body=json.dumps(holder).encode())
    env = exporter_env(api[0]) | s3.env()
    refused = run_exporter(["run", str(job_file), "--output", s3.url("stale")], env)
    assert refused.returncode == 4, refused.stderr
    assert "host gone-host, pid 4242, run 20260101T000000000000Z-dead00" in refused.stderr
    assert s3.keys("stale/") == {f"stale/_staging/{JOB}.lease": len(json.dumps(holder))}, "a refused run wrote"
    wait_for_lease_expiry(s3, "stale")
    out = export(job_file, s3.url("stale"), env)
    assert "took over the lease" in out and "gone-host" in out
    root = s3.mirror("stale/", tmp_path / "mirror")
    for dataset in DATASETS:
        assert dataset_rows(root, dataset) == expected[dataset], dataset
    assert f"stale/_staging/{JOB}.lease" not in s3.keys("stale/"), "the lease was not released"


def test_a_missing_bucket_or_an_unreachable_endpoint_is_one_line_and_exit_1(
    api: tuple[str, TradesyncSimulator], job_file: Path, s3: S3Server
) -> None:
    env = exporter_env(api[0]) | s3.env()
    missing = run_exporter(["run", str(job_file), "--output", "s3://no-such-bucket/x"], env)
    assert missing.returncode == 1
    assert error_lines(missing.stderr) == ["error: s3://no-such-bucket/x: bucket 'no-such-bucket' does not exist"]
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    gone = run_exporter(["run", str(job_file), "--output", s3.url("x")], env | {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"})
    assert gone.returncode == 1
    lines = error_lines(gone.stderr)
    assert len(lines) == 1 and "S3 unreachable" in lines[0] and "Traceback" not in gone.stderr, gone.stderr
    assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in gone.stderr + missing.stderr
