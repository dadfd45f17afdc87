"""Scale-out benchmark: many rate-limited tenants, one process against a local Dask cluster.

    python bench/cluster.py [--tenants 16] [--accounts 100000] [--latency-ms 50] [--rps 5] [--workers 2,4]

Each tenant is its own Tradesync simulator process (50 ms latency, its own rate limit); the job
exports every tenant's ``accounts`` (and its balances and equity). The same job runs with one
process, then ``--workers N`` for each N. Reported: wall time, speed-up, and the CPU the exporter
spent per page (its processes' user + system time over the pages fetched), from which the
speed-up on a machine with more cores follows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import exporter_bin, free_port, publish, run_main, stop


def wait_up(url: str) -> None:
    for _ in range(600):
        try:
            urllib.request.urlopen(url + "/accounts?limit=1", timeout=1)
            return
        except Exception as exc:  # 401 means it is up
            if getattr(exc, "code", None) in (401, 403, 429):
                return
            time.sleep(0.2)
    raise SystemExit(f"simulator {url} did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=16)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--rps", type=float, default=5, help="each tenant's rate limit (and the job's rps)")
    parser.add_argument("--workers", default="2,4")
    parser.add_argument("--stem", default="cluster")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    sims, env = [], dict(os.environ)
    lines = ['name = "fleet"']
    try:
        for i in range(args.tenants):
            port = free_port()
            sims.append(subprocess.Popen(
                [exporter_bin(), "sandbox", "tradesync", "--port", str(port), "--accounts", str(args.accounts),
                 "--trades-per-account", "0", "--seed", str(i), "--latency-ms", str(args.latency_ms),
                 "--rps", str(args.rps), "--warm"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            prefix = f"T{i}"
            env |= {f"{prefix}_BASE_URL": f"http://127.0.0.1:{port}", f"{prefix}_API_KEY": "sim-key",
                    f"{prefix}_API_SECRET": "sim-secret"}
            lines += [f"[sources.t{i}]", 'kind = "tradesync"', f'env_prefix = "{prefix}"', 'datasets = ["accounts"]',
                      f"rps = {args.rps}", "concurrency = 4", "page_size = 1000"]
        for i in range(args.tenants):
            wait_up(env[f"T{i}_BASE_URL"])
        job = work / "fleet.toml"
        job.write_text("\n".join(lines) + "\n")
        runs = []
        for workers in [0, *[int(w) for w in args.workers.split(",") if w]]:
            out = work / f"out-{workers}"
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.monotonic()
            flags = ["--workers", str(workers)] if workers else []
            done = subprocess.run([exporter_bin(), "run", str(job), "-o", str(out), "--summary", "json", *flags],
                                  env=env, capture_output=True, text=True)
            seconds = time.monotonic() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if done.returncode != 0:
                raise SystemExit(f"run with workers={workers} failed:\n{done.stderr[-3000:]}")
            summary = json.loads(done.stdout)
            pages = sum(r["requests"] for r in summary["requests"].values())
            rows = sum(d["rows"] for d in summary["datasets"] if d["dataset"] == "accounts")
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            runs.append({"workers": workers, "seconds": round(seconds, 2), "rows": rows, "requests": pages,
                         "cpu_seconds": round(cpu, 2), "cpu_ms_per_page": round(1000 * cpu / max(pages, 1), 1),
                         "http_429": sum(r["http_429"] for r in summary["requests"].values())})
            shutil.rmtree(out, ignore_errors=True)
        base = runs[0]["seconds"]
        floor = args.accounts / 1000 / args.rps  # the rate limit's floor: pages of one tenant / its rps
        report = {"tenants": args.tenants, "accounts": args.accounts, "latency_ms": args.latency_ms,
                  "rps_per_tenant": args.rps, "cores": os.cpu_count(), "rate_floor_seconds": round(floor, 1),
                  "runs": runs}
        table = (f"{args.tenants} tenants x {args.accounts:,} accounts, {args.latency_ms:.0f} ms latency, "
                 f"rate limit {args.rps:g}/s each (floor {floor:.1f} s), {os.cpu_count()} cores\n\n"
                 "| run | seconds | speed-up | requests | 429s | CPU s | CPU ms/page |\n"
                 "|---|---|---|---|---|---|---|\n")
        for r in runs:
            name = f"--workers {r['workers']}" if r["workers"] else "one process"
            table += (f"| {name} | {r['seconds']} | {base / r['seconds']:.2f}x | {r['requests']} | {r['http_429']} "
                      f"| {r['cpu_seconds']} | {r['cpu_ms_per_page']} |\n")
        publish(Path(__file__).resolve().parent / "results", args.stem, report, table)
    finally:
        for proc in sims:
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
