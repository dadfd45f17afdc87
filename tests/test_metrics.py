"""Metrics for schedulers (Prometheus text file) and the JSON summary, through the command line
against a simulator over loopback HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from exporter.cli import main
from exporter.manifest import DatasetResult
from exporter.metrics import RunOutcome, render, write_metrics
from exporter.runner import RunResult
from exporter.sandbox.tradesync import tradesync_simulator

ROOT = Path(__file__).resolve().parent.parent
GOOD = {"TRADESYNC_API_KEY": "sim-key", "TRADESYNC_API_SECRET": "sim-secret"}


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the file, parsed by prometheus_client: (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(found: dict, name: str, **labels: str) -> float:
    return found[(f"brokerexport_{name}", tuple(sorted(labels.items())))]


def job_file(tmp_path: Path, **top: str) -> Path:
    path = tmp_path / "nightly.toml"
    extra = "".join(f'{k} = "{v}"\n' for k, v in top.items())
    path.write_text(f'name = "nightly"\n{extra}\n[sources.tradesync]\nrps = 0\nconcurrency = 4\nmax_attempts = 20\n')
    return path


def manifests(output: Path) -> dict[str, dict[str, Any]]:
    return {p.parent.parent.name: json.loads(p.read_text()) for p in output.glob("tradesync/*/*/_manifest.json")}


def test_success_then_a_failed_run(tmp_path: Path) -> None:
    prom = tmp_path / "nightly.prom"
    output = tmp_path / "out"
    job = job_file(tmp_path)
    cli = CliRunner()
    config = dict(accounts=30, trades_per_account=3, rate_limit_rps=0, error_rate=0.15, fault_kinds=("429",))
    with tradesync_simulator(**config) as (url, sim):
        env = GOOD | {"TRADESYNC_BASE_URL": url}
        before = time.time()
        ok = cli.invoke(main, ["run", str(job), "--output", str(output), "--metrics-file", str(prom)], env=env)
        after = time.time()
        assert ok.exit_code == 0, ok.output
        served = sim.state()
        first = samples(prom)
        assert value(first, "last_run_success", job="nightly") == 1
        succeeded = value(first, "last_success_timestamp_seconds", job="nightly")
        assert before <= succeeded <= after
        assert 0 < value(first, "run_duration_seconds", job="nightly") <= after - before
        published = manifests(output)
        assert set(published) == {"accounts", "balances", "equity", "trades"}
        for dataset, manifest in published.items():
            assert value(first, "rows", job="nightly", source="tradesync", dataset=dataset) == \
                manifest["datasets"][dataset]["rows"]
        # the counters are the run's, as the server saw them
        assert value(first, "requests_total", job="nightly", source="tradesync") == served["requests_total"]
        assert value(first, "rate_limited_total", job="nightly", source="tradesync") == \
            served["responses_by_status"]["429"] > 0
        assert value(first, "retries_total", job="nightly", source="tradesync") == \
            published["accounts"]["requests"]["retries"] > 0

        wrong = env | {"TRADESYNC_API_SECRET": "not-the-secret"}
        failed = cli.invoke(main, ["run", str(job), "--output", str(output), "--metrics-file", str(prom)], env=wrong)
        assert failed.exit_code == 3
        assert len(failed.stderr.strip().splitlines()) == 1 and "not-the-secret" not in failed.stderr
        asked = sim.state()["requests_total"] - served["requests_total"]
    second = samples(prom)
    assert value(second, "last_run_success", job="nightly") == 0
    assert value(second, "last_success_timestamp_seconds", job="nightly") == succeeded
    for dataset, manifest in published.items():  # the published snapshot did not change
        assert value(second, "rows", job="nightly", source="tradesync", dataset=dataset) == \
            manifest["datasets"][dataset]["rows"]
    assert value(second, "requests_total", job="nightly", source="tradesync") == asked > 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_job_key_and_json_summary(tmp_path: Path) -> None:
    prom = tmp_path / "from-job.prom"
    output = tmp_path / "out"
    job = job_file(tmp_path, metrics_file=str(prom))
    with tradesync_simulator(accounts=12, trades_per_account=2, rate_limit_rps=0) as (url, _):
        result = CliRunner().invoke(main, ["run", str(job), "--output", str(output), "--summary", "json"],
                                    env=GOOD | {"TRADESYNC_BASE_URL": url})
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # the whole of stdout is one JSON object
    published = manifests(output)
    assert {d["dataset"]: d["rows"] for d in summary["datasets"]} == {
        name: m["datasets"][name]["rows"] for name, m in published.items()}
    assert summary["rows"] == sum(m["datasets"][name]["rows"] for name, m in published.items())
    assert {m["run_id"] for m in published.values()} == {summary["run_id"]}
    assert summary["requests"]["tradesync"] == published["accounts"]["requests"]
    assert summary["snapshot_date"] == published["accounts"]["snapshot_date"]
    assert value(samples(prom), "last_run_success", job="nightly") == 1


def test_metrics_file_errors(tmp_path: Path) -> None:
    cli = CliRunner()
    missing = cli.invoke(main, ["run", str(job_file(tmp_path)), "--metrics-file", str(tmp_path / "no" / "x.prom")])
    assert missing.exit_code == 2
    assert missing.stderr.strip().splitlines() == [
        f"error: metrics file {tmp_path / 'no' / 'x.prom'}: the folder {tmp_path / 'no'} does not exist"]
    remote = cli.invoke(main, ["run", str(job_file(tmp_path, metrics_file="s3://bucket/x.prom"))])
    assert remote.exit_code == 2
    assert remote.stderr.startswith(f"error: {tmp_path / 'nightly.toml'}: key 'metrics_file' must be a local file")


def many_datasets(count: int) -> RunOutcome:
    datasets = [DatasetResult(source="tradesync", dataset=f"dataset_{i:04d}", rows=i, files=[], path="-")
                for i in range(count)]
    requests = {"tradesync": {"requests": 7, "retries": 1, "http_429": 1}}
    result = RunResult("r", "nightly", "2026-01-01", "", "", 1.0, datasets, requests, 0)
    return RunOutcome("nightly", started=time.time() - 1, result=result)


WRITER = """
import resource, signal, sys
from pathlib import Path
from tests.test_metrics import many_datasets
from exporter.metrics import write_metrics
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
outcome = many_datasets(int(sys.argv[2]))
limit = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    write_metrics(Path(sys.argv[1]), outcome)
except OSError as exc:
    print(exc.errno)
    sys.exit(7)
"""


def test_the_file_is_never_half_written(tmp_path: Path) -> None:
    """The new file cannot be written whole (the process may write only half of it): the previous
    file stays as it was, complete, and nothing else is left in the folder."""
    prom = tmp_path / "nightly.prom"
    write_metrics(prom, many_datasets(2))
    old = prom.read_bytes()
    size = len(render(many_datasets(400), time.time(), old.decode()))
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    child = subprocess.run([sys.executable, "-c", WRITER, str(prom), "400", str(size // 2)], env=env,
                           capture_output=True, text=True, cwd=ROOT)
    assert child.returncode == 7, child.stderr
    assert int(child.stdout) == 27  # EFBIG: the write really failed half way
    assert prom.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nightly.prom"]
    assert value(samples(prom), "rows", job="nightly", source="tradesync", dataset="dataset_0001") == 1

    # the same write without the limit replaces the file whole
    child = subprocess.run([sys.executable, "-c", WRITER, str(prom), "400", str(size * 4)], env=env,
                           capture_output=True, text=True, cwd=ROOT)
    assert child.returncode == 0, child.stderr
    assert value(samples(prom), "rows", job="nightly", source="tradesync", dataset="dataset_0399") == 399
