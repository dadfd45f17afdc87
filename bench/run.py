"""Benchmark: the exporter against the floor and the limit of exporting ``/accounts``, side by side.

    python bench/run.py                      # 200,000 and 1,000,000 accounts at 0 and 20 ms latency
    python bench/run.py --quick              # 20,000 accounts only (results in a temporary folder)
    python bench/run.py --sizes 50000 --latencies 0 --repeat 3

For each size one simulator process (``bench/sim.py``: every page pre-rendered, served from memory,
no rate limit) serves every contender, one after another, each in its own process:

* ``limit``: a sequential aiohttp keyset walk that only fetches and parses pages (``bench/limit.py``);
* ``floor``: that walk writing Parquet with the explicit schema, the simplest correct exporter
  (``bench/floor.py``);
* ``exporter``: ``exporter run`` of the accounts dataset (concurrency 8, parallel_walks auto);
* at the largest size and 20 ms (else the largest latency): ``exporter seq`` (``parallel_walks = 1``)
  and ``exporter K=8`` (``parallel_walks = 8``, ``concurrency = 8``); and ``walk seq`` / ``walk K=8``,
  the exporter's own walk with the same settings and every page dropped (``bench/walk.py``): what
  the parallel walks gain apart from the CPU that converting and writing the pages need.

Each contender runs under ``bench/rss.py``, a ~10 MB wrapper that times it and reads
``getrusage(RUSAGE_CHILDREN).ru_maxrss`` once it exits: the kernel's high-water mark of the
contender's resident set (see that file for why not ``os.wait4`` from here). Wall time is the
contender's process lifetime, interpreter start-up and imports included, for all of them.
The simulator is another process and is not counted. Requests are counted by the simulator (``/_sim/state``,
reset before each contender). A result is valid when the process exits 0 and it delivered exactly
N rows (for Parquet outputs: N rows and N distinct ids). Results: ``bench/results/latest.json``
and ``latest.md`` for the full run, the one the README's table cites; any other run (``--quick``,
other sizes, latencies or repeats) writes to a new temporary folder unless ``--results`` names one,
so it never overwrites those. The markdown table is also printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from common import exporter_bin, free_port, publish, run_main, stop, tail

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
KEY, SECRET = "sim-key", "sim-secret"
FULL_LATENCIES = [0.0, 20.0]
WALKS_LATENCY_MS = 20.0
WALKS_TARGET = 5.0

JOB = """name = "bench"
[sources.tradesync]
datasets = ["accounts"]
concurrency = {concurrency}
rps = 0
page_size = 1000
parallel_walks = {walks}
"""


@dataclass(frozen=True)
class Contender:
    name: str
    kind: str  # "limit", "floor" or "exporter"
    walks: int = 0  # exporter: parallel_walks (0 = auto)
    concurrency: int = 8


MAIN = [Contender("limit", "limit"), Contender("floor", "floor"), Contender("exporter", "exporter")]
WALKS = [
    Contender("exporter seq", "exporter", walks=1),
    Contender("exporter K=8", "exporter", walks=8),
    Contender("walk seq", "walk", walks=1),
    Contender("walk K=8", "walk", walks=8),
]


@dataclass
class Run:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    requests: int
    peak_in_flight: int
    rows: int
    distinct_ids: int | None
    exit_code: int
    valid: bool
    problem: str = ""


# --------------------------------------------------------------------------- the simulator


class Simulator:
    """``bench/sim.py`` on a free port, in its own process; killed on exit, whatever happens."""

    def __init__(self, accounts: int, log_path: Path) -> None:
        self.accounts = accounts
        self.log_path = log_path
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Simulator:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, str(BENCH / "sim.py"), "--port", str(port), "--accounts", str(self.accounts)]
        with self.log_path.open("wb") as log:
            # Own session: a Ctrl-C in the terminal reaches us, and we stop the simulator ourselves.
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_ready(timeout=900)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self._proc)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"simulator exited with {self._proc.returncode}:\n{tail(self.log_path)}")
            try:
                self.get("/_sim/state")
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"simulator not ready after {timeout:.0f}s")

    def get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return json.loads(response.read())

    def post(self, path: str) -> dict[str, Any]:
        request = urllib.request.Request(self.url + path, method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())






# --------------------------------------------------------------------------- one contender




def run_contender(c: Contender, sim: Simulator, size: int, work: Path) -> Run:
    out = work / c.name.replace(" ", "_").replace("=", "")
    out.mkdir()
    env = {**os.environ, "TRADESYNC_API_KEY": KEY, "TRADESYNC_API_SECRET": SECRET, "TRADESYNC_BASE_URL": sim.url}
    if c.kind == "limit":
        cmd = [sys.executable, str(BENCH / "limit.py"), sim.url]
    elif c.kind == "floor":
        cmd = [sys.executable, str(BENCH / "floor.py"), sim.url, str(out / "accounts.parquet")]
    else:
        job = work / f"{out.name}.toml"
        job.write_text(JOB.format(concurrency=c.concurrency, walks=c.walks))
        cmd = [exporter_bin(), "run", str(job), "--output", str(out), "--dataset", "accounts"]
        if c.kind == "walk":
            cmd = [sys.executable, str(BENCH / "walk.py"), str(job)]
    sim.post("/_sim/reset")  # request counters start at zero for every contender
    usage = measure(cmd, env, work)
    code = usage["exit_code"]
    state = sim.get("/_sim/state")
    problem = "" if code == 0 else f"exit {code}: {tail(work / 'stderr', 5)}"
    rows, distinct = 0, None
    if code == 0 and c.kind in ("limit", "walk"):
        rows = int(json.loads((work / "stdout").read_text())["rows"])
    elif code == 0:
        rows, distinct = count_parquet(sorted(out.rglob("*.parquet")))
    if not problem and (rows != size or distinct not in (None, size)):
        problem = f"expected {size:,} rows, got {rows:,} ({distinct} distinct ids)"
    shutil.rmtree(out, ignore_errors=True)
    return Run(
        wall_s=usage["wall_s"],
        cpu_s=usage["cpu_s"],
        peak_rss_mb=usage["peak_rss_mb"],
        requests=int(state["requests_total"]),
        peak_in_flight=int(state["peak_in_flight"]),
        rows=rows,
        distinct_ids=distinct,
        exit_code=code,
        valid=not problem,
        problem=problem,
    )


def measure(cmd: list[str], env: dict[str, str], work: Path) -> dict[str, Any]:
    """Run ``cmd`` under ``bench/rss.py``: exit code, wall and CPU seconds, peak RSS of its process."""
    report = work / "usage.json"
    report.unlink(missing_ok=True)
    wrapped = [sys.executable, str(BENCH / "rss.py"), str(report), "--", *cmd]
    with (work / "stdout").open("wb") as out, (work / "stderr").open("wb") as err:
        # Own process group, so that on Ctrl-C / SIGTERM we stop the wrapper *and* the contender.
        proc = subprocess.Popen(wrapped, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            code = proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    if not report.exists():
        raise RuntimeError(f"the measuring wrapper failed (exit {code}):\n{tail(work / 'stderr')}")
    return json.loads(report.read_text())


def count_parquet(paths: list[Path]) -> tuple[int, int]:
    """Rows (from the footers) and distinct ``id`` values of Parquet files."""
    if not paths:
        return 0, 0
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
    ids = pa.chunked_array([c for p in paths for c in pq.read_table(p, columns=["id"]).column("id").chunks])
    return rows, int(pc.count_distinct(ids).as_py())


# --------------------------------------------------------------------------- summary


def summarise(name: str, size: int, latency: float, runs: list[Run]) -> dict[str, Any]:
    wall = statistics.median(r.wall_s for r in runs)
    return {
        "contender": name,
        "accounts": size,
        "latency_ms": latency,
        "wall_s": round(wall, 3),
        "records_per_s": round(size / wall),
        "requests": runs[0].requests,
        "peak_in_flight": max(r.peak_in_flight for r in runs),
        "peak_rss_mb": round(statistics.median(r.peak_rss_mb for r in runs), 1),
        "cpu_s": round(statistics.median(r.cpu_s for r in runs), 2),
        "valid": all(r.valid for r in runs),
        "runs": [asdict(r) for r in runs],
    }


def ratios(results: list[dict[str, Any]], walks_at: tuple[int, float]) -> dict[str, Any]:
    by = {(r["contender"], r["accounts"], r["latency_ms"]): r for r in results}
    sizes = sorted({r["accounts"] for r in results})
    latencies = sorted({r["latency_ms"] for r in results})

    def ratio(a: str, b: str, size: int, lat: float, key: str = "wall_s") -> float | None:
        x, y = by.get((a, size, lat)), by.get((b, size, lat))
        return round(x[key] / y[key], 2) if x and y and y[key] else None

    wall = [
        {
            "accounts": size,
            "latency_ms": lat,
            "exporter/floor": ratio("exporter", "floor", size, lat),
            "exporter/limit": ratio("exporter", "limit", size, lat),
            "floor/limit": ratio("floor", "limit", size, lat),
        }
        for size in sizes
        for lat in latencies
    ]
    out: dict[str, Any] = {"wall_time": wall}
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        out["exporter_rss_scaling"] = [
            {
                "latency_ms": lat,
                "accounts": [small, large],
                "rss_ratio": round(by[("exporter", large, lat)]["peak_rss_mb"]
                                   / by[("exporter", small, lat)]["peak_rss_mb"], 2),
            }
            for lat in latencies
        ]
    speedup = ratio("exporter seq", "exporter K=8", *walks_at)
    if speedup is not None:
        out["walks_speedup"] = {
            "accounts": walks_at[0],
            "latency_ms": walks_at[1],
            "sequential/K=8": speedup,
            "target": WALKS_TARGET,
            "target_met": speedup >= WALKS_TARGET,
            "walk only, sequential/K=8": ratio("walk seq", "walk K=8", *walks_at),
        }
    return out


def markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    lines = [
        f"Benchmark {meta['finished'][:16]} UTC, {meta['cpus']} CPUs, Python {meta['python']}, "
        f"median of {meta['repeat']} run(s). RSS: peak of each contender's own process.",
        "",
        "| accounts | latency | contender | wall s | records/s | requests | peak RSS MB | CPU s | valid |",
        "|---:|---:|:---|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['accounts']:,} | {r['latency_ms']:g} ms | {r['contender']} | {r['wall_s']:.2f} "
            f"| {r['records_per_s']:,} | {r['requests']:,} | {r['peak_rss_mb']:.0f} | {r['cpu_s']:.1f} "
            f"| {'yes' if r['valid'] else '**NO**'} |"
        )
    rat = report["ratios"]
    keys = ("exporter/floor", "exporter/limit", "floor/limit")
    lines += ["", "| accounts | latency | " + " | ".join(keys) + " |", "|---:|---:|---:|---:|---:|"]
    for w in rat["wall_time"]:
        cells = [f"{w[k]:.2f}x" if w[k] is not None else "-" for k in keys]
        lines.append(f"| {w['accounts']:,} | {w['latency_ms']:g} ms | " + " | ".join(cells) + " |")
    lines.append("")
    for s in rat.get("exporter_rss_scaling", []):
        small, large = s["accounts"]
        lines.append(f"- exporter peak RSS at {large:,} / at {small:,} accounts, {s['latency_ms']:g} ms: "
                     f"{s['rss_ratio']:.2f}x")
    if "walks_speedup" in rat:
        w = rat["walks_speedup"]
        verdict = "met" if w["target_met"] else "**not met**"
        lines.append(f"- exporter parallel_walks=1 / parallel_walks=8 wall time, {w['accounts']:,} accounts at "
                     f"{w['latency_ms']:g} ms: {w['sequential/K=8']:.2f}x (target >= {w['target']:g}x: {verdict})")
        if w.get("walk only, sequential/K=8") is not None:
            lines.append(f"- the same walks with every page dropped (bench/walk.py): "
                         f"{w['walk only, sequential/K=8']:.2f}x")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def numbers(text: str) -> list[float]:
        return [float(x) for x in text.split(",") if x.strip()]

    parser = argparse.ArgumentParser(description="exporter vs floor vs limit on the Tradesync simulator")
    parser.add_argument("--quick", action="store_true", help="20,000 accounts only")
    parser.add_argument("--sizes", type=lambda t: [int(x) for x in numbers(t)], help="default 200000,1000000")
    parser.add_argument("--latencies", type=numbers, default=FULL_LATENCIES, help="simulated ms (default 0,20)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; the median is kept")
    parser.add_argument("--results", type=Path, help="folder for latest.json and latest.md (default: bench/results "
                        "for the full run, a new temporary folder for any other)")
    args = parser.parse_args(argv)
    full = not args.quick and args.sizes is None and args.latencies == FULL_LATENCIES and args.repeat == 1
    if args.sizes is None:
        args.sizes = [20_000] if args.quick else [200_000, 1_000_000]
    if args.repeat < 1 or not args.sizes or not args.latencies:
        parser.error("need at least one size, one latency and --repeat >= 1")
    if args.results is None:
        # bench/results holds the full run the README cites: a smaller run must not replace it
        args.results = RESULTS if full else Path(tempfile.mkdtemp(prefix="brokerexport-bench-results-"))
    return args


def main() -> None:
    args = parse_args()
    sizes, latencies = sorted(args.sizes), sorted(args.latencies)
    walks_at = (sizes[-1], WALKS_LATENCY_MS if WALKS_LATENCY_MS in latencies else latencies[-1])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind, so the simulator is stopped
    results_dir: Path = args.results
    results_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    # Warm the OS file cache for the interpreters' imports, so the first contender is not penalised.
    subprocess.run([sys.executable, "-c", "import aiohttp, orjson, pyarrow.parquet, exporter.cli"], check=True)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="brokerexport-bench-") as tmp:
        work = Path(tmp)
        for size in sizes:
            print(f"== {size:,} accounts: starting the simulator (pre-renders every page)", flush=True)
            with Simulator(size, results_dir / "simulator.log") as sim:
                for latency in latencies:
                    sim.post(f"/_bench/latency?ms={latency:g}")
                    contenders = MAIN + (WALKS if (size, latency) == walks_at else [])
                    runs: dict[str, list[Run]] = {c.name: [] for c in contenders}
                    for _ in range(args.repeat):  # round-robin, so repeats spread over the run
                        for c in contenders:
                            run = run_contender(c, sim, size, work)
                            runs[c.name].append(run)
                            print(f"   {size:>9,} {latency:>4g} ms  {c.name:<13} {run.wall_s:7.2f}s  "
                                  f"{size / run.wall_s:>9,.0f} rec/s  {run.peak_rss_mb:6.0f} MB  "
                                  f"{run.requests:>5} req", flush=True)
                            if not run.valid:
                                print(f"   WARNING: {c.name} is INVALID: {run.problem}", flush=True)
                    results += [summarise(name, size, latency, rs) for name, rs in runs.items()]
    report = {
        "meta": {
            "started": started.isoformat(),
            "finished": datetime.now(UTC).isoformat(),
            "host": platform.node(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sizes": sizes,
            "latencies_ms": latencies,
            "repeat": args.repeat,
            "wall_time": "process lifetime of the contender (interpreter start-up and imports included)",
            "peak_rss": "ru_maxrss of the contender's process (bench/rss.py wrapper); simulator not counted",
            "requests": "API requests counted by the simulator during the contender's run",
        },
        "results": results,
        "ratios": ratios(results, walks_at),
    }
    publish(results_dir, "latest", report, markdown(report))
    if not all(r["valid"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    run_main(main)
