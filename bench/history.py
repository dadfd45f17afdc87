"""Benchmark: Tradesync ``balance_history`` fan-out, and TraderEvolution's nightly by operations route.

    python bench/history.py                       # both parts, full sizes (see --help)
    python bench/history.py --only history --accounts 20000 --concurrency 8 --latency 20
    python bench/history.py --only te --te-users 10000 --te-small-users 100

1. **balance_history** (Tradesync simulator, latency L, no rate limit): ``exporter run`` of
   ``balance_history`` only, ``concurrency = C``, ``rps = 0``. Achieved requests/s = dailies
   requests / (end of the last one - arrival of the first one) on the simulator's side, against
   C / L (target >= 0.80, as for the other fan-outs in ``bench/rates.py``).
2. **TraderEvolution nightly** (accounts, balances, equity, account_operations, trades; 90 days),
   ``operations_route = report`` at the large size and ``per_account`` at a small one, against an
   unlimited simulator (``rps`` set high): the requests per collection are counted on the
   simulator's side, and the time at the job's default of 1.6 requests/s **per collection** is
   *computed* from them (collections are paced separately and run at once, so the slowest
   collection sets the time). Running the paced nightly for real would take as long as computed:
   too long for this shared 2-core machine; the measured wall time of the unlimited run is given
   beside it. ``per_account`` is extrapolated from its requests per account.

Results: ``bench/results/history.json`` and ``history.md`` (never ``latest.*``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from rates import RESULTS, SIM_START, SimProcess, peak_overlap, run_exporter

BENCH = Path(__file__).resolve().parent
DEFAULT_RATE = 1.6  # TraderEvolution's documented safe rate per collection

HISTORY_JOB = """name = "bench-history"
[sources.tradesync]
datasets = ["balance_history"]
concurrency = {concurrency}
rps = 0
history_since = "{since}"
"""

TE_JOB = """name = "bench-te-{route}"
[sources.traderevolution]
concurrency = 8
rps = 100000
since = "{since}"
until = "{until}"
operations_route = "{route}"
"""


def exporter_cmd(job: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "exporter", "run", str(job), "--output", str(out)]


def history(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    c, latency = args.concurrency, args.latency
    config = {"accounts": args.accounts, "trades_per_account": 3, "latency_ms": latency, "rate_limit_rps": 0}
    since = (SIM_START - timedelta(days=89)).date().isoformat()
    print(f"== balance_history: {args.accounts:,} accounts, C={c}, L={latency:g} ms", flush=True)
    with SimProcess("tradesync", config, work / "sim-history.log") as sim:
        job, out = work / "history.toml", work / "history-out"
        job.write_text(HISTORY_JOB.format(concurrency=c, since=since))
        env = {**os.environ, "TRADESYNC_API_KEY": "sim-key", "TRADESYNC_API_SECRET": "sim-secret",
               "TRADESYNC_BASE_URL": sim.root}
        run = run_exporter(exporter_cmd(job, out), env, work, cap_s=3600)
        events = sim.get("/_bench/events")["events"]
    dailies = [e for e in events if e[2] == "analyses"]
    first, last = min(e[0] for e in dailies), max(e[1] for e in dailies)
    span = last - first
    ideal = c / (latency / 1000)
    achieved = len(dailies) / span
    result = {
        "accounts": args.accounts, "concurrency": c, "latency_ms": latency, "exit_code": run["exit_code"],
        "dailies_requests": len(dailies), "other_requests": dict(Counter(e[2] for e in events if e[2] != "analyses")),
        "statuses": dict(Counter(str(e[3]) for e in dailies)), "fanout_s": round(span, 2),
        "achieved_rps": round(achieved, 1), "ideal_rps": round(ideal, 1), "ratio": round(achieved / ideal, 3),
        "peak_in_flight": peak_overlap(dailies), "wall_s": round(run["wall_s"], 2),
        "exporter_cpu_s": round(run["cpu_s"] or 0, 2),
    }
    print(f"   {len(dailies):,} dailies requests in {span:.1f}s: {achieved:.0f}/s of ideal {ideal:.0f}/s "
          f"= {achieved / ideal:.2f} (exit {run['exit_code']}, wall {run['wall_s']:.1f}s)", flush=True)
    return result


def te_nightly(route: str, users: int, work: Path) -> dict[str, Any]:
    config = {"users": users, "positions_per_account": 10, "rate_limit_rps": 0}
    until = SIM_START
    since = until - timedelta(days=90)
    print(f"== TraderEvolution nightly, operations_route = {route}, {users:,} users", flush=True)
    with SimProcess("traderevolution", config, work / f"sim-te-{route}.log") as sim:
        job, out = work / f"te-{route}.toml", work / f"te-{route}-out"
        job.write_text(TE_JOB.format(route=route, since=since.isoformat(), until=until.isoformat()))
        env = {**os.environ, "TRADEREVOLUTION_LOGIN": "sim-user", "TRADEREVOLUTION_PASSWORD": "sim-pass",
               "TRADEREVOLUTION_BASE_URL": sim.root + "/proftrading/rest"}
        run = run_exporter(exporter_cmd(job, out), env, work, cap_s=3600)
        events = sim.get("/_bench/events")["events"]
        manifest = next(out.glob("traderevolution/accounts/snapshot_date=*/_manifest.json"), None)
    accounts = json.loads(manifest.read_text())["datasets"]["accounts"]["rows"] if manifest else None
    per = Counter(e[2] for e in events)
    slowest = max(per.values()) if per else 0
    result = {
        "route": route, "users": users, "accounts": accounts, "exit_code": run["exit_code"],
        "stderr_tail": run["stderr_tail"], "requests_per_collection": dict(per), "requests": sum(per.values()),
        "unlimited_wall_s": round(run["wall_s"], 1),
        "computed_s_at_1_6_per_collection": round(slowest / DEFAULT_RATE, 1),
    }
    print(f"   {accounts} accounts, {sum(per.values()):,} requests {dict(per)}; at {DEFAULT_RATE}/s per collection "
          f"{slowest / DEFAULT_RATE:.0f}s (unlimited run: {run['wall_s']:.1f}s, exit {run['exit_code']})", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("history", "te"))
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=20)
    parser.add_argument("--te-users", type=int, default=10_000, help="report route (about 2 accounts per user)")
    parser.add_argument("--te-small-users", type=int, default=100, help="per_account route")
    parser.add_argument("--results", type=Path, default=RESULTS / "history.json")
    args = parser.parse_args()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        work = Path(tmp)
        if args.only in (None, "history"):
            out["balance_history"] = history(args, work)
        if args.only in (None, "te"):
            out["te_report"] = te_nightly("report", args.te_users, work)
            small = te_nightly("per_account", args.te_small_users, work)
            ops = small["requests_per_collection"].get("accountOperations", 0)
            if small["accounts"]:
                # one request per account and 30-day window: scale by the report run's accounts
                scale = (out["te_report"]["accounts"] or 0) / small["accounts"]
                small["extrapolated_operations_requests"] = round(ops * scale)
                small["extrapolated_s_at_1_6"] = round(ops * scale / DEFAULT_RATE)
            out["te_per_account"] = small
    args.results.write_text(json.dumps(out, indent=2) + "\n")
    print(f"results: {args.results}")


if __name__ == "__main__":
    main()
