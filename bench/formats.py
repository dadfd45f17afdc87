"""Benchmark: the same export as Parquet folders, Delta Lake tables and Iceberg tables, side by side.

    python bench/formats.py                      # 1,000,000 accounts, parquet / delta / iceberg once each
    python bench/formats.py --accounts 200000 --repeat 2

One warmed simulator (``bench/sim.py``) serves every run. Each run is ``exporter run --format F`` of
accounts, balances and equity (one walk, three datasets) into a fresh local folder, under
``bench/rss.py`` (wall time, CPU, peak RSS of the exporter's process; the simulator not counted).
A run is valid when it exits 0 and every dataset, read back with the format's own library
(pyarrow, deltalake, pyiceberg), holds exactly N rows with N distinct ids. Files per partition:
the part files the snapshot date's partition lists. Results: ``bench/results/formats.json`` and
``formats.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import exporter_bin, publish, run_main, tail
from run import KEY, SECRET, Simulator, measure

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
DATASETS = ("accounts", "balances", "equity")
FORMATS = ("parquet", "delta", "iceberg")
JOB = """name = "bench-formats"
[sources.tradesync]
datasets = ["accounts", "balances", "equity"]
concurrency = 8
rps = 0
page_size = 1000
"""


def read_back(output_format: str, output: Path, dataset: str) -> tuple[int, int, int]:
    """Rows, distinct ids and files of the dataset's (only) snapshot date, read by the format's library."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    key = "id" if dataset == "accounts" else "account_id"
    if output_format == "parquet":
        files = sorted((output / "tradesync" / dataset).rglob("*.parquet"))
        column = ds.dataset(files, format="parquet").to_table(columns=[key]).column(key)
    elif output_format == "delta":
        from deltalake import DeltaTable

        table = DeltaTable(str(output / "tradesync" / dataset))
        files = table.file_uris()
        column = table.to_pyarrow_dataset().to_table(columns=[key]).column(key)
    else:
        from pyiceberg.catalog import load_catalog

        catalog = load_catalog("brokerexport", type="sql", uri=f"sqlite:///{output}/_iceberg/catalog.db")
        table = catalog.load_table(("tradesync", dataset))
        files = [task.file.file_path for task in table.scan().plan_files()]
        column = table.scan(selected_fields=(key,)).to_arrow().column(key)
    return len(column), int(pc.count_distinct(column).as_py()), len(files)


def one_run(output_format: str, sim: Simulator, size: int, work: Path, number: int) -> dict[str, Any]:
    job = work / "job.toml"
    job.write_text(JOB)
    output = work / f"out-{number}"
    env = {**os.environ, "TRADESYNC_API_KEY": KEY, "TRADESYNC_API_SECRET": SECRET, "TRADESYNC_BASE_URL": sim.url}
    sim.post("/_sim/reset")
    usage = measure([exporter_bin(), "run", str(job), "--output", str(output), "--format", output_format], env, work)
    problem = "" if usage["exit_code"] == 0 else f"exit {usage['exit_code']}: {tail(work / 'stderr', 5)}"
    files: dict[str, int] = {}
    if not problem:
        for dataset in DATASETS:
            rows, distinct, files[dataset] = read_back(output_format, output, dataset)
            if rows != size or distinct != size:
                problem = f"{dataset}: expected {size:,} rows, got {rows:,} ({distinct:,} distinct)"
    shutil.rmtree(output, ignore_errors=True)
    return {"format": output_format, "wall_s": usage["wall_s"], "cpu_s": usage["cpu_s"],
            "peak_rss_mb": usage["peak_rss_mb"], "files_per_partition": files, "valid": not problem,
            "problem": problem}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-formats-") as tmp:
        work = Path(tmp)
        with Simulator(args.accounts, work / "sim.log") as sim:
            number = 0
            for _ in range(args.repeat):
                for output_format in FORMATS:
                    number += 1
                    result = one_run(output_format, sim, args.accounts, work, number)
                    print(f"{output_format:>8}: {result['wall_s']:.2f} s, {result['peak_rss_mb']:.0f} MB, "
                          f"files {result['files_per_partition']}"
                          + (f"  INVALID: {result['problem']}" if not result["valid"] else ""), flush=True)
                    runs.append(result)
    summary: dict[str, dict[str, Any]] = {}
    for output_format in FORMATS:
        mine = [r for r in runs if r["format"] == output_format and r["valid"]]
        if mine:
            summary[output_format] = {"wall_s": statistics.median(r["wall_s"] for r in mine),
                                      "cpu_s": statistics.median(r["cpu_s"] for r in mine),
                                      "peak_rss_mb": max(r["peak_rss_mb"] for r in mine),
                                      "files_per_partition": mine[0]["files_per_partition"]}
    base = summary.get("parquet", {}).get("wall_s")
    for figures in summary.values():
        figures["wall_over_parquet"] = figures["wall_s"] / base if base else None
    report = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.platform(),
              "cores": os.cpu_count(), "accounts": args.accounts, "runs": runs, "summary": summary}
    lines = [f"# Parquet vs Delta vs Iceberg output: {args.accounts:,} accounts, accounts+balances+equity", "",
             f"{report['when']}, {report['cores']} cores; median of {args.repeat} alternating run(s) each; "
             "rows_per_file 1,000,000", "",
             "| format | wall s | / parquet | CPU s | peak RSS MB | files per partition (accounts, balances, equity) |",
             "|---|---:|---:|---:|---:|---|"]
    for output_format, figures in summary.items():
        ratio = figures["wall_over_parquet"]
        files = ", ".join(str(figures["files_per_partition"][d]) for d in DATASETS)
        lines.append(f"| {output_format} | {figures['wall_s']:.2f} | {ratio:.2f}x | {figures['cpu_s']:.2f} | "
                     f"{figures['peak_rss_mb']:.0f} | {files} |")
    publish(RESULTS, "formats", report, "\n".join(lines) + "\n")
    if any(not r["valid"] for r in runs):
        raise SystemExit(1)


if __name__ == "__main__":
    run_main(main)
