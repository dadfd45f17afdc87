"""The commit protocol under SIGKILL: a kill at every step of a publish, then a rerun, gives the
complete new snapshot in every dataset, exactly once, on a local folder and on S3 (moto over
loopback). The case that lost data before the protocol existed (killed right after the first
partition swap, then an empty partition swapped over real data on the rerun) is one of them."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.sandbox._sim_base import run_simulator_in_thread
from exporter.sandbox.tradesync import TradesyncSimConfig, TradesyncSimulator

from .chaos_helpers import dataset_rows, exporter_env, run_exporter, start_exporter, write_job
from .s3_helpers import S3Server, s3_server

JOB = "commits"
DATASETS = ("accounts", "balances", "equity", "trades")
CONFIG = TradesyncSimConfig(accounts=1500, trades_per_account=2, rate_limit_rps=0)
SETTINGS = {"concurrency": 4, "page_size": 500}


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    with run_simulator_in_thread(TradesyncSimulator(CONFIG).make_app) as url:
        yield url


@pytest.fixture(scope="module")
def job_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_job(tmp_path_factory.mktemp("job") / f"{JOB}.toml", JOB, rows_per_file=1000, **SETTINGS)


@pytest.fixture(scope="module")
def expected(api: str, job_file: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    """The rows of one clean run: what every dataset must hold after any kill and rerun."""
    output = tmp_path_factory.mktemp("clean")
    done = run_exporter(["run", str(job_file), "--output", str(output)], exporter_env(api))
    assert done.returncode == 0, done.stderr
    return {d: dataset_rows(output, d) for d in DATASETS}


def killed_run(job_file: Path, output: str, env: dict[str, str], kill_point: str) -> None:
    process = start_exporter(["run", str(job_file), "--output", output], env, kill_point=kill_point)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL, f"{kill_point} was never reached: {stderr[-2000:]}"


def rerun(job_file: Path, output: str, env: dict[str, str]) -> str:
    done = run_exporter(["run", str(job_file), "--output", output], env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def manifests(root: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for dataset in DATASETS:
        (partition,) = sorted((root / "tradesync" / dataset).glob("snapshot_date=*"))
        found[dataset] = json.loads((partition / "_manifest.json").read_text())
    return found


def assert_complete(root: Path, expected: dict[str, list[dict]], run_id: str) -> None:
    """Every dataset holds the clean rows once, its partition holds exactly the files its manifest
    lists (none empty in place of data), and every manifest names the run that was committing."""
    for dataset, meta in manifests(root).items():
        assert meta["run_id"] == run_id, dataset
        (partition,) = sorted((root / "tradesync" / dataset).glob("snapshot_date=*"))
        listed = {f["name"]: f["bytes"] for f in meta["datasets"][dataset]["files"]}
        present = {p.name: p.stat().st_size for p in partition.glob("*.parquet")}
        assert present == listed, dataset
        assert meta["datasets"][dataset]["rows"] == len(expected[dataset]) > 0, dataset
        assert dataset_rows(root, dataset) == expected[dataset], dataset


LOCAL_STEPS = ["journal:1", "swap:1", "swap:2", "swap:3", "swap:4", "cleanup:1", "cleanup-mid:1"]


@pytest.mark.parametrize("step", LOCAL_STEPS)
def test_local_kill_at_every_commit_step_then_rerun_publishes_everything_once(
    step: str, api: str, job_file: Path, expected: dict[str, list[dict]], tmp_path: Path
) -> None:
    output = tmp_path / "out"
    env = exporter_env(api)
    rerun(job_file, str(output), env)  # yesterday's snapshot (same date here: the rerun replaces it)
    before = manifests(output)
    killed_run(job_file, str(output), env, f"commit:{step}")
    journal = json.loads((output / "_staging" / JOB / "commit.json").read_text())
    swapped = int(step.split(":")[1]) if step.startswith("swap") else (4 if step.startswith("cleanup") else 0)
    # readers see, partition by partition, the old snapshot or the new one: never a gap, never a mix
    order = [p["dataset"].split("/")[1] for p in journal["partitions"]]
    now = manifests(output)
    for index, dataset in enumerate(order):
        want = journal["run_id"] if index < swapped else before[dataset]["run_id"]
        assert now[dataset]["run_id"] == want, (step, dataset)
    out = rerun(job_file, str(output), env)
    assert "interrupted commit was completed" in out
    assert_complete(output, expected, journal["run_id"])
    assert not (output / "_staging").exists()


def test_a_staged_partition_missing_a_file_is_never_published(
    api: str, job_file: Path, expected: dict[str, list[dict]], tmp_path: Path
) -> None:
    """The roll-forward checks what the commit record lists before a swap: a staged partition that
    lost a part file is refused with one line (exit 1), and the published snapshot stays whole."""
    output = tmp_path / "out"
    env = exporter_env(api)
    rerun(job_file, str(output), env)
    before = manifests(output)
    killed_run(job_file, str(output), env, "commit:journal:1")
    journal = json.loads((output / "_staging" / JOB / "commit.json").read_text())
    victim = journal["partitions"][0]
    (output / victim["staged"] / victim["parts"][0]["name"]).unlink()
    done = run_exporter(["run", str(job_file), "--output", str(output)], env)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "lacks" in lines[0] and victim["parts"][0]["name"] in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert manifests(output) == before
    for dataset in DATASETS:
        assert dataset_rows(output, dataset) == expected[dataset]


# --------------------------------------------------------------------------- object storage


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@pytest.fixture(scope="module")
def s3_job_file(job_file: Path) -> Path:
    """The same job with a 2 s lease: a killed run's lease expires before the rerun takes over."""
    path = job_file.with_name("s3-commits.toml")
    path.write_text(job_file.read_text().replace("[sources.tradesync]", "lease_ttl_seconds = 2\n\n[sources.tradesync]"))
    return path


def wait_for_lease_expiry(s3: S3Server, prefix: str) -> None:
    """Until the server's clock says the killed run's lease is older than its ttl (a lower bound
    on time only: the lease object and the answer's Date come from the server)."""
    import time
    from email.utils import parsedate_to_datetime

    client, key = s3.client(), f"{prefix}/_staging/{JOB}.lease"
    while True:
        head = client.head_object(Bucket=s3.bucket, Key=key)
        now = parsedate_to_datetime(head["ResponseMetadata"]["HTTPHeaders"]["date"])
        if (now - head["LastModified"]).total_seconds() > 2:
            return
        time.sleep(0.2)


S3_STEPS = ["journal:1", "complete:1", "complete:5", "manifest:1", "manifest:3", "cleanup:1", "cleanup-mid:1"]


@pytest.mark.parametrize("step", S3_STEPS)
def test_s3_kill_at_every_commit_step_then_rerun_publishes_everything_once(
    step: str, api: str, s3_job_file: Path, expected: dict[str, list[dict]], s3: S3Server, tmp_path: Path
) -> None:
    job_file = s3_job_file
    prefix = f"kill-{step.replace(':', '-')}"
    url = s3.url(prefix)
    env = exporter_env(api) | s3.env()
    rerun(job_file, url, env)
    first = {k for k in s3.keys(prefix + "/tradesync/")}
    killed_run(job_file, url, env, f"commit:{step}")
    wait_for_lease_expiry(s3, prefix)
    journal = json.loads(s3.client().get_object(Bucket=s3.bucket, Key=f"{prefix}/_staging/{JOB}/commit.json")
                         ["Body"].read())
    out = rerun(job_file, url, env)
    assert "interrupted commit was completed" in out
    root = s3.mirror(prefix + "/", tmp_path / "mirror")
    assert_complete(root, expected, journal["run_id"])
    # nothing of the first run is left, nothing is pending, nothing is staged
    assert not first & set(s3.keys(prefix + "/tradesync/")) - {k for k in first if k.endswith("_manifest.json")}
    assert s3.pending_uploads(prefix + "/") == []
    assert s3.keys(prefix + "/_staging/") == {}
