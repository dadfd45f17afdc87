"""Benchmark: the same export to a local folder and to S3 (moto's server on loopback), side by side.

    python bench/storage.py                     # 1,000,000 accounts, alternating local / s3, twice each
    python bench/storage.py --accounts 200000 --repeat 1

One warmed simulator (``bench/sim.py``) and one S3 server (``moto.server``, another process) serve
every run. Each run is ``exporter run`` of accounts, balances and equity (one walk, three datasets)
under ``bench/rss.py`` (wall time, CPU, peak RSS of the exporter's process; neither server counted).
A run is valid when it exits 0 and every dataset holds exactly N rows with N distinct ids.
Results: ``bench/results/storage.json`` and ``storage.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import exporter_bin, free_port, publish, run_main, stop, tail
from run import KEY, SECRET, Simulator, measure

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
DATASETS = ("accounts", "balances", "equity")
JOB = """name = "bench-storage"
[sources.tradesync]
datasets = ["accounts", "balances", "equity"]
concurrency = 8
rps = 0
page_size = 1000
"""
AWS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_REGION": "us-east-1"}


class S3Server:
    """``moto.server`` on a free port, in its own process."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> S3Server:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        with self.log.open("wb") as log:
            self._proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(self.url, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    stop(self._proc)
                    raise RuntimeError(f"moto server did not start:\n{tail(self.log)}") from None
                time.sleep(0.2)
        self.client().create_bucket(Bucket="bench")
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self._proc)

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"])

    def download(self, prefix: str, into: Path) -> None:
        client = self.client()
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket="bench", Prefix=prefix):
            for item in page.get("Contents", []):
                target = into / item["Key"][len(prefix):]
                target.parent.mkdir(parents=True, exist_ok=True)
                client.download_file("bench", item["Key"], str(target))


def count_rows(paths: list[Path], key: str) -> tuple[int, int]:
    """Rows (from the footers) and distinct ``key`` values of Parquet files."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not paths:
        return 0, 0
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
    ids = pa.chunked_array([c for p in paths for c in pq.read_table(p, columns=[key]).column(key).chunks])
    return rows, int(pc.count_distinct(ids).as_py())


def one_run(where: str, sim: Simulator, s3: S3Server, size: int, work: Path, number: int) -> dict[str, Any]:
    job = work / "job.toml"
    job.write_text(JOB)
    local = work / f"out-{number}"
    prefix = f"run-{number}"
    output = str(local) if where == "local" else f"s3://bench/{prefix}"
    env = {**os.environ, **AWS, "AWS_ENDPOINT_URL": s3.url, "TRADESYNC_API_KEY": KEY,
           "TRADESYNC_API_SECRET": SECRET, "TRADESYNC_BASE_URL": sim.url}
    sim.post("/_sim/reset")
    usage = measure([exporter_bin(), "run", str(job), "--output", output], env, work)
    problem = "" if usage["exit_code"] == 0 else f"exit {usage['exit_code']}: {tail(work / 'stderr', 5)}"
    if where == "s3" and not problem:
        s3.download(prefix + "/", local)
    counts = {}
    if not problem:
        for dataset in DATASETS:
            counts[dataset] = count_rows(sorted((local / "tradesync" / dataset).rglob("*.parquet")),
                                         "id" if dataset == "accounts" else "account_id")
            key = counts[dataset]
            if key[0] != size or key[1] != size:
                problem = f"{dataset}: expected {size:,} rows, got {key}"
    shutil.rmtree(local, ignore_errors=True)
    return {"where": where, "wall_s": usage["wall_s"], "cpu_s": usage["cpu_s"], "peak_rss_mb": usage["peak_rss_mb"],
            "valid": not problem, "problem": problem}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        work = Path(tmp)
        with Simulator(args.accounts, work / "sim.log") as sim, S3Server(work / "moto.log") as s3:
            number = 0
            for _ in range(args.repeat):
                for where in ("local", "s3"):
                    number += 1
                    result = one_run(where, sim, s3, args.accounts, work, number)
                    print(f"{where:>5}: {result['wall_s']:.2f} s, {result['peak_rss_mb']:.0f} MB"
                          + (f"  INVALID: {result['problem']}" if not result["valid"] else ""), flush=True)
                    runs.append(result)
    summary: dict[str, dict[str, float]] = {}
    for where in ("local", "s3"):
        mine = [r for r in runs if r["where"] == where and r["valid"]]
        if mine:
            summary[where] = {"wall_s": statistics.median(r["wall_s"] for r in mine),
                              "cpu_s": statistics.median(r["cpu_s"] for r in mine),
                              "peak_rss_mb": max(r["peak_rss_mb"] for r in mine)}
    ratio = (summary["s3"]["wall_s"] / summary["local"]["wall_s"]) if len(summary) == 2 else None
    report = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.platform(),
              "cores": os.cpu_count(), "accounts": args.accounts, "runs": runs, "summary": summary,
              "s3_over_local_wall": ratio}
    lines = [f"# Local folder vs S3 (moto on loopback): {args.accounts:,} accounts, accounts+balances+equity",
             "", f"{report['when']}, {report['cores']} cores; median of {args.repeat} alternating runs each", "",
             "| output | wall s | CPU s | peak RSS MB |", "|---|---:|---:|---:|"]
    for where, figures in summary.items():
        lines.append(f"| {where} | {figures['wall_s']:.2f} | {figures['cpu_s']:.2f} | {figures['peak_rss_mb']:.0f} |")
    if ratio:
        lines += ["", f"s3 / local wall: {ratio:.2f}x"]
    publish(RESULTS, "storage", report, "\n".join(lines) + "\n")


if __name__ == "__main__":
    run_main(main)
