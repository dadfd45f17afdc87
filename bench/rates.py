"""Benchmark: request rates of the exporter, fan-out concurrency and adaptive rate limiting.

    python bench/rates.py            # full: 6 fan-out, 4 adaptive-rate, 2 TraderEvolution runs (~7 min)
    python bench/rates.py --quick    # 2 fan-out runs, 3 short adaptive-rate runs, 2 short TE runs (~1.5 min)
    python bench/rates.py --only fanout --results /tmp/rates --keep-events
    python bench/rates.py --only te  # TraderEvolution's probing only, into rates-te.json / rates-te.md

Three measurements, each against the project's own simulator in a separate process
(``bench/rate_sim.py``, which records every API request's arrival, end, status, Retry-After,
client port and query string):

1. **Fan-out** (TraderEvolution, no rate limit, latency L): ``exporter run`` of the
   ``account_operations`` dataset only, ``concurrency = C``, ``rps = 0``, one date window per
   account, so one ``/accountOperations`` request per account. Achieved requests/s = operations
   requests / (end of the last one - arrival of the first one), both on the simulator's side: the
   fan-out itself, without interpreter start-up, login, the account listing or Parquet publishing.
   Target: achieved / (C / L) >= 0.80. The whole-run figure (operations requests / exporter wall
   time), mean requests in flight and CPU seconds of both processes are reported beside it.
2. **Adaptive rate** (Tradesync, token bucket of R requests/s and burst 5 per API key): ``exporter
   run`` of ``accounts`` with ``concurrency = 8``, small pages and ``rps = 0`` (unknown: the
   exporter must find the limit); the same with ``rps = 2R`` (a ceiling above the limit); both
   again with the simulator sending ``Retry-After`` (the quick version skips the last one). From
   the simulator's request log: successful responses/s in the second half of the run ("settled")
   / R (target >= 0.90), the share of 429 answers overall and in the second half (target <= 2%),
   the most 429s one request met, and for every 429 carrying ``Retry-After: N`` the gap to the
   next request on the same connection and on any connection, compared to N, plus the requests
   sent while the exporter had been told to wait (target: none). The exporter runs under
   ``bench/pacer_trace.py`` (the unchanged CLI, with the pacer's rate changes and pauses logged).
   A run still going after 1.5 x its ideal duration (+5 s) is stopped (SIGTERM) and marked capped.
3. **TraderEvolution, rate unknown** (per-collection token bucket of R requests/s, burst R, and a
   token blocked for 3 s after 5 violations within 60 s): ``exporter run`` of ``accounts``,
   ``balances``, ``equity`` and ``account_operations`` (one ``/accountOperations`` request per
   account, accounts sized for ~70 s at R), ``concurrency = 4``, ``rps = 0``, latency 20 ms, for
   R = 10 and R = 3. From the request log: successful ``/accountOperations`` responses/s in the
   second half of that fan-out / R (target >= 0.80), 429 answers / all requests (target <= 2%), and
   the simulator's count of blocked tokens (target <= 1); beside them the rate the exporter
   reports as settled in the manifest (``requests.settled_rps``) and its pacer's 429s and probes.

Results: ``bench/results/rates.json`` and ``rates.md``; the markdown is also printed. Exit code 1
if an exporter run failed (non-zero exit, or wrong rows in a run that was not capped); missed
targets are reported, not failures.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from common import exporter_bin, free_port, publish, run_main, stop, tail

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"

SIM_START = datetime(2025, 1, 31, 12, tzinfo=UTC)  # both simulators' default clock
TE_HISTORY_DAYS = 90
FANOUT_TARGET = 0.80
SETTLED_TARGET = 0.90
THROTTLED_TARGET = 0.02
RA_PIPE_S = 0.003  # a request arriving this soon after the exporter paused was already on its way
RA_GRACE_S = 0.05  # an early request this soon after the pause had passed the pacer before the 429
RA_TOLERANCE_S = 0.002

TE_JOB = """name = "rates-fanout"
[sources.traderevolution]
datasets = ["account_operations"]
concurrency = {concurrency}
rps = 0
page_size = 1000
since = "{since}"
until = "{until}"
operations_window_days = {window_days}
"""

TE_RATE_JOB = """name = "rates-te"
[sources.traderevolution]
datasets = ["accounts", "balances", "equity", "account_operations"]
concurrency = {concurrency}
rps = 0
page_size = 1000
since = "{since}"
until = "{until}"
operations_window_days = {window_days}
block_wait_seconds = 12
"""
TE_SETTLED_TARGET = 0.80
TE_BLOCKS_TARGET = 1

TS_JOB = """name = "rates-adaptive"
[sources.tradesync]
datasets = ["accounts"]
concurrency = {concurrency}
rps = {rps:g}
page_size = {page_size}
"""


@dataclass(frozen=True)
class Plan:
    concurrencies: tuple[int, ...]
    latencies_ms: tuple[float, ...]
    fanout_seconds: float  # the ideal fan-out lasts about this long: accounts = seconds x C / L
    min_users: int
    max_users: int  # the exporter may be far slower than C / L: keep the big runs short
    rate: float  # R
    burst: int
    accounts: int
    page_size: int
    concurrency: int
    latency_ms: float
    cap_factor: float  # a run is stopped after cap_factor x ideal duration + cap_extra_s
    cap_extra_s: float
    variants: tuple[tuple[str, float, bool], ...]  # (name, rps configured, Retry-After header)
    te_rates: tuple[float, ...] = (10.0, 3.0)  # R per collection
    te_seconds: float = 70.0  # /accountOperations requests = R x this
    te_latency_ms: float = 20.0
    te_concurrency: int = 4
    te_blocking: tuple[int, float] = (5, 3.0)  # violations within 60 s, block seconds


def plan_for(quick: bool) -> Plan:
    r = 50.0
    variants = [
        ("rps unset", 0.0, False),
        (f"rps = {2 * r:g} (2R)", 2 * r, False),
        ("rps unset, Retry-After", 0.0, True),
    ]
    if quick:
        return Plan((8, 32), (20.0,), 2.0, 300, 1000, r, 5, 12_500, 50, 8, 10.0, 1.25, 3.0, tuple(variants),
                    te_seconds=30.0)
    variants.append((f"rps = {2 * r:g} (2R), Retry-After", 2 * r, True))
    # 80,000 accounts in pages of 50: 1,602 requests, 32 s at R = 50/s
    return Plan((8, 16, 32), (20.0, 50.0), 6.0, 700, 2500, r, 5, 80_000, 50, 8, 10.0, 1.5, 5.0, tuple(variants))


# --------------------------------------------------------------------------- processes


class SimProcess:
    """``bench/rate_sim.py`` on a free port in its own process; stopped on exit, whatever happens."""

    def __init__(self, kind: str, config: dict[str, Any], log_path: Path) -> None:
        self.kind, self.config, self.log_path = kind, config, log_path
        self.root = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SimProcess:
        port = free_port()
        self.root = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, str(BENCH / "rate_sim.py"), "--port", str(port), "--kind", self.kind,
               "--config", json.dumps(self.config)]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while True:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"simulator exited with {self._proc.returncode}:\n{tail(self.log_path)}")
                try:
                    self.get("/_sim/state")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise TimeoutError("simulator not ready after 300 s") from None
                    time.sleep(0.1)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self._proc)

    def cpu_s(self) -> float | None:
        """CPU seconds the simulator process has used so far (Linux ``/proc``), None elsewhere."""
        try:
            fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()  # type: ignore[union-attr]
        except (OSError, AttributeError):
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.root + path, timeout=30) as response:
            return json.loads(response.read())

    def post(self, path: str) -> dict[str, Any]:
        request = urllib.request.Request(self.root + path, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def fresh(self) -> None:
        """Counters, rate-limit buckets, clock and the request log back to zero."""
        self.post("/_sim/reset")
        self.post("/_bench/clear")








def run_exporter(cmd: list[str], env: dict[str, str], work: Path, cap_s: float) -> dict[str, Any]:
    """Run the exporter; stop it (SIGTERM, then SIGKILL) if it is still going after ``cap_s``."""
    stdout, stderr = work / "stdout", work / "stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        capped = False
        try:
            status, usage = wait4(proc, started + cap_s)
            if status is None:
                capped = True
                os.killpg(proc.pid, signal.SIGTERM)  # the exporter stops gracefully on SIGTERM
                status, usage = wait4(proc, time.monotonic() + 20)
                if status is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    status, usage = wait4(proc, None)
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        ended = time.monotonic()
        code = os.waitstatus_to_exitcode(status) if status is not None else -1
    text = stdout.read_text(errors="replace")
    summary = re.search(r"([\d,]+) requests, ([\d,]+) retries, ([\d,]+) x 429", text)
    counts = [int(g.replace(",", "")) for g in summary.groups()] if summary else [None, None, None]
    return {
        "exit_code": code,
        "capped": capped,
        "started": started,
        "ended": ended,
        "wall_s": ended - started,
        "cpu_s": usage.ru_utime + usage.ru_stime if usage is not None else None,
        "exporter_requests": counts[0],
        "exporter_retries": counts[1],
        "exporter_429": counts[2],
        "stderr_tail": tail(stderr, 5) if code != 0 and not capped else "",
    }


def wait4(proc: subprocess.Popen[bytes], deadline: float | None) -> tuple[int | None, Any]:
    """Reap ``proc`` with ``os.wait4`` (for its CPU time) by ``deadline``; (None, None) if still running."""
    while True:
        pid, status, usage = os.wait4(proc.pid, 0 if deadline is None else os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return status, usage
        if deadline is not None and time.monotonic() >= deadline:
            return None, None
        time.sleep(0.02)


def parquet_rows(folder: Path) -> tuple[int, int | None]:
    """Rows (footers) and distinct ``id`` values of the published Parquet files under ``folder``."""
    paths = sorted(folder.rglob("*.parquet"))
    if not paths:
        return 0, 0
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
    ids: set[int] = set()
    for p in paths:
        ids.update(pq.read_table(p, columns=["id"]).column("id").to_pylist())
    return rows, len(ids)


# --------------------------------------------------------------------------- request-log analysis

Event = list[Any]  # [arrived, ended, collection, status, retry_after, connection, query]


def peak_overlap(events: list[Event]) -> int:
    marks = sorted([(e[0], 1) for e in events] + [(e[1], -1) for e in events], key=lambda m: (m[0], m[1]))
    peak = level = 0
    for _, step in marks:
        level += step
        peak = max(peak, level)
    return peak


def fanout_figures(events: list[Event], concurrency: int, latency_ms: float) -> dict[str, Any]:
    ops = [e for e in events if e[2] == "accountOperations"]
    if not ops:
        return {"ops_requests": 0}
    first, last = min(e[0] for e in ops), max(e[1] for e in ops)
    span = max(last - first, 1e-9)
    durations = [e[1] - e[0] for e in ops]
    ideal = concurrency / (latency_ms / 1000)
    achieved = len(ops) / span
    return {
        "ops_requests": len(ops),
        "ops_statuses": _count(e[3] for e in ops),
        "fanout_s": round(span, 3),
        "first_op": first,
        "last_op": last,
        "achieved_rps": round(achieved, 1),
        "ideal_rps": round(ideal, 1),
        "ratio": round(achieved / ideal, 3),
        "target": FANOUT_TARGET,
        "target_met": achieved / ideal >= FANOUT_TARGET,
        "peak_in_flight_ops": peak_overlap(ops),
        "mean_in_flight_ops": round(sum(durations) / span, 2),
        "mean_server_ms": round(statistics.fmean(durations) * 1000, 2),
    }


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return dict(sorted(out.items()))


def rate_figures(events: list[Event], rate: float, trace: list[dict[str, Any]]) -> dict[str, Any]:
    api = sorted((e for e in events if e[2] == "accounts"), key=lambda e: e[0])
    if not api:
        return {"requests": 0}
    t0, t1 = api[0][0], max(e[1] for e in api)
    span = max(t1 - t0, 1e-9)
    mid = t0 + span / 2
    ok = [e for e in api if e[3] == 200]
    throttled = [e for e in api if e[3] == 429]
    second = [e for e in api if e[1] >= mid]
    ok2 = sum(1 for e in second if e[3] == 200)
    thr2 = sum(1 for e in second if e[3] == 429)
    settled = ok2 / (t1 - mid)
    seconds = int(span) + 1
    ok_per_s, thr_per_s = [0] * seconds, [0] * seconds
    for e in api:
        slot = min(int(e[1] - t0), seconds - 1)
        if e[3] == 200:
            ok_per_s[slot] += 1
        elif e[3] == 429:
            thr_per_s[slot] += 1
    full_seconds = ok_per_s[int(span / 2) + 1 : int(span)]  # whole seconds inside the second half
    out: dict[str, Any] = {
        "requests": len(api),
        "statuses": _count(e[3] for e in api),
        "run_s": round(span, 2),
        "ok_rps_overall": round(len(ok) / span, 2),
        "settled_rps": round(settled, 2),
        "settled_ratio": round(settled / rate, 3),
        "settled_target": SETTLED_TARGET,
        "settled_met": settled / rate >= SETTLED_TARGET,
        "share_429": round(len(throttled) / len(api), 4),
        "share_429_second_half": round(thr2 / max(1, len(second)), 4),
        "throttled_target": THROTTLED_TARGET,
        "throttled_met": len(throttled) / len(api) <= THROTTLED_TARGET,
        "ok_per_second": ok_per_s,
        "throttled_per_second": thr_per_s,
        "second_half_ok_per_s": _spread(full_seconds),
        "pauses_over_100ms": _pauses(api, t0),
        "attempts": attempt_figures(api),
        "retry_after": retry_after_figures(api, trace),
        "pacer": pacer_figures(trace, t0, mid, t1),
    }
    return out


def attempt_figures(api: list[Event]) -> dict[str, Any]:
    """429s each request met before it succeeded (a retry repeats its query string)."""
    throttled: dict[str, int] = {}
    succeeded: set[str] = set()
    for e in api:  # in arrival order
        query = e[6]
        if query in succeeded:
            continue
        if e[3] == 200:
            succeeded.add(query)
        elif e[3] == 429:
            throttled[query] = throttled.get(query, 0) + 1
    done = [throttled.get(q, 0) for q in succeeded]
    unfinished = [n for q, n in throttled.items() if q not in succeeded]
    return {
        "requests": len(succeeded) + len(unfinished),
        "first_try": sum(1 for n in done if n == 0),
        "max_429s_before_success": max(done, default=0),
        "with_3_or_more_429s": sum(1 for n in done + unfinished if n >= 3),
        "never_succeeded": len(unfinished),
        "max_429s_never_succeeded": max(unfinished, default=0),
    }


def _spread(values: list[int]) -> dict[str, Any]:
    if not values:
        return {}
    return {"min": min(values), "median": statistics.median(values), "max": max(values),
            "stdev": round(statistics.pstdev(values), 2)}


def _pauses(api: list[Event], t0: float) -> dict[str, Any]:
    """Gaps of more than 100 ms between consecutive arrivals: when the exporter sent nothing."""
    arrivals = [e[0] for e in api]
    gaps = [(b - a, a - t0) for a, b in itertools.pairwise(arrivals) if b - a > 0.1]
    return {
        "count": len(gaps),
        "total_s": round(sum(g for g, _ in gaps), 2),
        "longest_s": round(max((g for g, _ in gaps), default=0.0), 3),
    }


def retry_after_figures(api: list[Event], trace: list[dict[str, Any]]) -> dict[str, Any]:
    """For each 429 with ``Retry-After: N``: gaps to the next request, and requests sent too early.

    Server side (the request log): the gap from the 429's answer to the next request on the same TCP
    connection (HTTP/1.1, no pipelining: necessarily sent after the client read that 429) and on any
    connection (may have been on its way already); "too soon": 429s whose connection carried another
    request before N seconds were over.

    Client side (the pacer trace, same clock): the pauses the exporter imposed on itself, merged
    into episodes where they overlap (a burst of 429s). A request arriving more than
    ``RA_PIPE_S`` after an episode began and before it ended was sent while the exporter knew it had
    to wait ("early"), split into those in the episode's first ``RA_GRACE_S`` (it had passed the
    pacer, or held a pacing slot, before the 429 came) and those after the episode's *first* pause
    had run out (woke at the end of that pause; later 429s of the burst had extended it). "Late":
    the first request after an episode, minus the episode's end.
    """
    told = [e for e in api if e[3] == 429 and e[4] is not None]
    if not told:
        return {"count": 0}
    arrivals = sorted(e[0] for e in api)
    by_conn: dict[int, list[float]] = {}
    for e in api:
        by_conn.setdefault(e[5], []).append(e[0])
    for times in by_conn.values():
        times.sort()
    gaps_any, gaps_conn, excess_conn = [], [], []
    for e in told:
        t, wait = e[1], float(e[4])
        i = bisect.bisect_right(arrivals, t)
        if i < len(arrivals):
            gaps_any.append(arrivals[i] - t)
        conn = by_conn[e[5]]
        j = bisect.bisect_right(conn, t)
        if j < len(conn):
            gaps_conn.append(conn[j] - t)
            excess_conn.append(conn[j] - t - wait)

    episodes: list[list[float]] = []  # [start, end, end of the first pause alone]
    for x in sorted((x for x in trace if x["ev"] == "pause"), key=lambda x: x["t"]):
        begin, until = x["t"], x["t"] + x["s"]
        if episodes and begin <= episodes[-1][1]:
            episodes[-1][1] = max(episodes[-1][1], until)
        else:
            episodes.append([begin, until, until])
    in_pipe, early_by, early_start, early_end, late = 0, [], 0, 0, []
    for begin, until, first_until in episodes:
        a = bisect.bisect_right(arrivals, begin)
        b = bisect.bisect_right(arrivals, begin + RA_PIPE_S)
        c = bisect.bisect_left(arrivals, until - RA_TOLERANCE_S)
        in_pipe += max(0, min(b, c) - a)
        for arrived in arrivals[b:c]:
            early_by.append(until - arrived)
            early_start += arrived < begin + RA_GRACE_S
            early_end += arrived >= first_until
        if c < len(arrivals):
            late.append(arrivals[c] - until)
    return {
        "count": len(told),
        "values": _count(e[4] for e in told),
        "gap_same_connection_s": _stats(gaps_conn),
        "gap_any_connection_s": _stats(gaps_any),
        "gap_minus_told_same_connection_s": _stats(excess_conn),
        "too_soon_same_connection": sum(1 for x in excess_conn if x < -RA_TOLERANCE_S),
        "client_pause_episodes": len(episodes),
        "client_pause_s": round(sum(e[1] - e[0] for e in episodes), 2),
        "in_pipe_requests": in_pipe,
        "early_requests": len(early_by),
        "early_by_s": _stats(early_by),
        "early_right_after_pause_began": early_start,
        "early_after_first_pause_ended": early_end,
        "first_request_after_pause_late_s": _stats(late),
    }


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"min": None, "median": None, "max": None}
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3), "max": round(max(values), 3)}


def pacer_figures(trace: list[dict[str, Any]], t0: float, mid: float, t1: float) -> dict[str, Any]:
    """What the exporter's pacer did (from ``bench/pacer_trace.py``): its rate over time, cuts, pauses."""
    if not trace:
        return {}
    throttles = [x for x in trace if x["ev"] == "throttled"]
    cuts = [x for x in throttles if x["before"] != x["after"]]
    rates = [(x["t"], x.get("rate", x.get("after"))) for x in trace if x["ev"] in ("rate", "throttled")]
    known = [(t, r) for t, r in rates if r is not None]
    late = [r for t, r in known if t >= mid]
    pauses = [x for x in trace if x["ev"] == "pause"]
    first_estimate = next(((x["t"] - t0, x["after"]) for x in cuts if x["before"] is None), None)
    return {
        "throttles_seen": len(throttles),
        "cuts": len(cuts),
        "cuts_second_half": sum(1 for x in cuts if x["t"] >= mid),
        "first_estimate": {"at_s": round(first_estimate[0], 2), "rate": round(first_estimate[1], 1)}
        if first_estimate else None,
        "rate_at_end": round(known[-1][1], 1) if known else None,
        "rate_second_half": {"min": round(min(late), 1), "max": round(max(late), 1),
                             "mean": round(statistics.fmean(late), 1)} if late else None,
        "rate_series": [[round(t - t0, 2), None if r is None else round(r, 2)] for t, r in rates],
        "pauses": len(pauses),
        "pause_s_total": round(sum(x["s"] for x in pauses), 2),
        "pause_s_max": round(max((x["s"] for x in pauses), default=0.0), 3),
    }


# --------------------------------------------------------------------------- the two measurements


def startup_cpu_s() -> float:
    """CPU seconds of ``exporter --help``: interpreter start-up and the CLI's imports (median of 3)."""
    samples = []
    for _ in range(3):
        proc = subprocess.Popen([exporter_bin(), "--help"], stdout=subprocess.DEVNULL)
        _, usage = wait4(proc, None)
        samples.append(usage.ru_utime + usage.ru_stime)
    return statistics.median(samples)


def fanout(plan: Plan, work: Path, log: Path, keep_dir: Path | None) -> list[dict[str, Any]]:
    results = []
    startup = startup_cpu_s()
    until = SIM_START
    since = until - timedelta(days=TE_HISTORY_DAYS)
    for latency in plan.latencies_ms:
        for c in plan.concurrencies:
            ideal_accounts = plan.fanout_seconds * c / (latency / 1000)
            users = min(plan.max_users, max(plan.min_users, round(ideal_accounts / 2)))  # ~2 accounts per user
            config = {"users": users, "positions_per_account": 3, "rate_limit_rps": 0, "latency_ms": latency}
            print(f"== fan-out C={c} L={latency:g} ms: TraderEvolution simulator, {users:,} users", flush=True)
            with SimProcess("traderevolution", config, log) as sim:
                state = sim.get("/_sim/state")
                out = work / f"fanout-{c}-{latency:g}"
                job = work / f"fanout-{c}-{latency:g}.toml"
                job.write_text(TE_JOB.format(concurrency=c, since=since.isoformat(), until=until.isoformat(),
                                             window_days=TE_HISTORY_DAYS + 30))
                env = {**os.environ, "TRADEREVOLUTION_BASE_URL": sim.root + "/proftrading/rest",
                       "TRADEREVOLUTION_LOGIN": "sim-user", "TRADEREVOLUTION_PASSWORD": "sim-pass"}
                sim.fresh()
                cmd = [exporter_bin(), "run", str(job), "--output", str(out), "--dataset", "account_operations"]
                sim_cpu = sim.cpu_s()
                run = run_exporter(cmd, env, work, cap_s=600)
                sim_cpu = _minus(sim.cpu_s(), sim_cpu)
                after = sim.get("/_sim/state")
                events = sim.get("/_bench/events")["events"]
                keep(keep_dir, f"fanout-C{c}-L{latency:g}", events, [])
            rows, distinct = parquet_rows(out) if run["exit_code"] == 0 else (0, None)
            shutil.rmtree(out, ignore_errors=True)
            accounts, operations = state["counts"]["accounts"], state["counts"]["operations"]
            fig = fanout_figures(events, c, latency)
            problem = ""
            if run["exit_code"] != 0:
                problem = f"exit {run['exit_code']}: {run['stderr_tail']}"
            elif rows != operations or distinct != operations:
                problem = f"expected {operations:,} operations, got {rows:,} rows ({distinct} distinct ids)"
            elif fig["ops_requests"] != accounts:
                problem = f"expected one operations request per account ({accounts:,}), got {fig['ops_requests']:,}"
            whole = fig["ops_requests"] / run["wall_s"]
            result = {
                "concurrency": c,
                "latency_ms": latency,
                "users": users,
                "accounts": accounts,
                "operations": operations,
                **{k: v for k, v in fig.items() if k not in ("first_op", "last_op")},
                "startup_s": round(fig["first_op"] - run["started"], 3) if "first_op" in fig else None,
                "after_fanout_s": round(run["ended"] - fig["last_op"], 3) if "last_op" in fig else None,
                "exporter_wall_s": round(run["wall_s"], 3),
                "exporter_cpu_s": _round(run["cpu_s"], 2),
                "sim_cpu_s": _round(sim_cpu, 2),
                "exporter_startup_cpu_s": round(startup, 2),
                "exporter_cpu_ms_per_request": _round(
                    (run["cpu_s"] - startup) * 1000 / run["exporter_requests"]
                    if run["cpu_s"] is not None and run["exporter_requests"] else None, 2),
                "whole_run_ops_rps": round(whole, 1),
                "sim_requests_total": after["requests_total"],
                "sim_peak_in_flight": after["peak_in_flight"],
                "exporter_requests": run["exporter_requests"],
                "rows": rows,
                "valid": not problem,
                "problem": problem,
            }
            print(f"   {fig['ops_requests']:,} requests in {fig.get('fanout_s', 0):.2f}s: "
                  f"{fig.get('achieved_rps', 0):,.0f}/s of {fig.get('ideal_rps', 0):,.0f}/s ideal = "
                  f"{fig.get('ratio', 0):.2f} (peak in flight {fig.get('peak_in_flight_ops')}); "
                  f"wall {run['wall_s']:.1f}s" + (f"  INVALID: {problem}" if problem else ""), flush=True)
            results.append(result)
    return results


def adaptive(plan: Plan, work: Path, log: Path, keep_dir: Path | None) -> list[dict[str, Any]]:
    results = []
    config = {"accounts": plan.accounts, "trades_per_account": 0, "latency_ms": plan.latency_ms,
              "rate_limit_rps": plan.rate, "rate_limit_burst": plan.burst, "retry_after_header": False}
    pages = -(-plan.accounts // plan.page_size)
    ideal_s = (pages + 2) / plan.rate
    cap = plan.cap_factor * ideal_s + plan.cap_extra_s
    print(f"== adaptive rate: Tradesync simulator, {plan.accounts:,} accounts, R={plan.rate:g}/s burst {plan.burst}, "
          f"{pages:,} pages of {plan.page_size} (ideal {ideal_s:.0f}s, capped at {cap:.0f}s)", flush=True)
    with SimProcess("tradesync", config, log) as sim:
        for name, rps, retry_after in plan.variants:
            sim.post(f"/_bench/config?rate_limit_rps={plan.rate:g}&rate_limit_burst={plan.burst}"
                     f"&retry_after_header={str(retry_after).lower()}")
            sim.fresh()
            slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
            out, job, trace_path = work / f"rate-{slug}", work / f"rate-{slug}.toml", work / f"rate-{slug}.jsonl"
            job.write_text(TS_JOB.format(concurrency=plan.concurrency, rps=rps, page_size=plan.page_size))
            env = {**os.environ, "TRADESYNC_API_KEY": "sim-key", "TRADESYNC_API_SECRET": "sim-secret",
                   "TRADESYNC_BASE_URL": sim.root}
            cmd = [sys.executable, str(BENCH / "pacer_trace.py"), str(trace_path),
                   "run", str(job), "--output", str(out), "--dataset", "accounts"]
            sim_cpu = sim.cpu_s()
            run = run_exporter(cmd, env, work, cap_s=cap)
            sim_cpu = _minus(sim.cpu_s(), sim_cpu)
            state = sim.get("/_sim/state")
            events = sim.get("/_bench/events")["events"]
            trace = [json.loads(line) for line in trace_path.read_text().splitlines()] if trace_path.exists() else []
            keep(keep_dir, f"rate-{slug}", events, trace)
            rows, distinct = parquet_rows(out) if run["exit_code"] == 0 and not run["capped"] else (0, None)
            shutil.rmtree(out, ignore_errors=True)
            fig = rate_figures(events, plan.rate, trace)
            problem = ""
            if run["exit_code"] != 0 and not run["capped"]:
                problem = f"exit {run['exit_code']}: {run['stderr_tail']}"
            elif not run["capped"] and (rows != plan.accounts or distinct != plan.accounts):
                problem = f"expected {plan.accounts:,} rows, got {rows:,} ({distinct} distinct ids)"
            result = {
                "variant": name,
                "rate_limit": plan.rate,
                "burst": plan.burst,
                "rps_configured": rps,
                "retry_after_header": retry_after,
                "concurrency": plan.concurrency,
                "page_size": plan.page_size,
                "accounts": plan.accounts,
                "latency_ms": plan.latency_ms,
                **fig,
                "sim_responses_by_status": state["responses_by_status"],
                "sim_peak_in_flight": state["peak_in_flight"],
                "exporter_wall_s": round(run["wall_s"], 2),
                "exporter_cpu_s": _round(run["cpu_s"], 2),
                "sim_cpu_s": _round(sim_cpu, 2),
                "capped": run["capped"],
                "cap_s": round(cap, 1),
                "pages_done": fig.get("statuses", {}).get("200", 0),
                "pages_needed": pages + 2,
                "exporter_requests": run["exporter_requests"],
                "exporter_retries": run["exporter_retries"],
                "exporter_429": run["exporter_429"],
                "rows": rows,
                "valid": not problem,
                "problem": problem,
            }
            ra = fig.get("retry_after", {})
            print(f"   {name:<34} {fig.get('run_s', 0):6.1f}s  settled {fig.get('settled_rps', 0):6.1f}/s = "
                  f"{fig.get('settled_ratio', 0):.2f} R  429: {fig.get('share_429', 0):.1%} overall, "
                  f"{fig.get('share_429_second_half', 0):.1%} 2nd half"
                  + (f"  RA gaps median {ra['gap_same_connection_s']['median']}s" if ra.get("count") else "")
                  + ("  (capped)" if run["capped"] else "")
                  + (f"  INVALID: {problem}" if problem else ""), flush=True)
            results.append(result)
    return results


def te_probing(plan: Plan, work: Path, log: Path, keep_dir: Path | None) -> list[dict[str, Any]]:
    results = []
    until = SIM_START
    since = until - timedelta(days=TE_HISTORY_DAYS)
    threshold, block_s = plan.te_blocking
    for rate in plan.te_rates:
        users = max(10, round(rate * plan.te_seconds / 2))  # ~2 accounts per user
        config = {"users": users, "positions_per_account": 3, "latency_ms": plan.te_latency_ms,
                  "rate_limit_rps": rate, "blocking_threshold": threshold, "blocking_duration_s": block_s}
        ideal_s = 2 * users / rate
        cap = 3 * ideal_s + 30
        print(f"== TraderEvolution, rps = 0: limit R={rate:g}/s per collection (burst {math.ceil(rate)}), block "
              f"{block_s:g}s after {threshold} violations, {users:,} users (~{ideal_s:.0f}s at R, capped at "
              f"{cap:.0f}s)", flush=True)
        with SimProcess("traderevolution", config, log) as sim:
            slug = f"te-r{rate:g}"
            out, job, trace_path = work / slug, work / f"{slug}.toml", work / f"{slug}.jsonl"
            job.write_text(TE_RATE_JOB.format(concurrency=plan.te_concurrency, since=since.isoformat(),
                                              until=until.isoformat(), window_days=TE_HISTORY_DAYS + 30))
            env = {**os.environ, "TRADEREVOLUTION_BASE_URL": sim.root + "/proftrading/rest",
                   "TRADEREVOLUTION_LOGIN": "sim-user", "TRADEREVOLUTION_PASSWORD": "sim-pass"}
            sim.fresh()
            cmd = [sys.executable, str(BENCH / "pacer_trace.py"), str(trace_path), "run", str(job),
                   "--output", str(out)]
            run = run_exporter(cmd, env, work, cap_s=cap)
            state = sim.get("/_sim/state")
            events = sim.get("/_bench/events")["events"]
            trace = [json.loads(line) for line in trace_path.read_text().splitlines()] if trace_path.exists() else []
            keep(keep_dir, slug, events, trace)
            reported = te_manifest_requests(out)
            shutil.rmtree(out, ignore_errors=True)
        fig = te_figures(events, rate, trace, state, reported)
        problem = ""
        if run["exit_code"] != 0 and not run["capped"]:
            problem = f"exit {run['exit_code']}: {run['stderr_tail']}"
        elif not run["capped"] and fig.get("ops_ok", 0) < state["counts"]["accounts"]:
            problem = f"{fig.get('ops_ok', 0)} operations requests succeeded for {state['counts']['accounts']} accounts"
        result = {"rate_limit": rate, "burst": math.ceil(rate), "blocking_threshold": threshold,
                  "blocking_duration_s": block_s, "users": users, "accounts": state["counts"]["accounts"],
                  "latency_ms": plan.te_latency_ms, "concurrency": plan.te_concurrency, **fig,
                  "exporter_wall_s": round(run["wall_s"], 2), "capped": run["capped"], "cap_s": round(cap, 1),
                  "valid": not problem, "problem": problem}
        print(f"   R={rate:g}: {fig.get('ops_s', 0):.1f}s of operations, settled {fig.get('settled_rps', 0):.2f}/s = "
              f"{fig.get('settled_ratio', 0):.2f} R; 429s {fig.get('share_429', 0):.2%} of {fig.get('requests', 0):,}; "
              f"blocks {fig.get('blocks', 0)}; exporter says {fig.get('reported_rps')}/s"
              + ("  (capped)" if run["capped"] else "") + (f"  INVALID: {problem}" if problem else ""), flush=True)
        results.append(result)
    return results


def te_manifest_requests(out: Path) -> dict[str, Any]:
    """The ``requests`` section of the run's manifest (one per dataset, all alike): {} if none."""
    for manifest in sorted(out.glob("traderevolution/*/snapshot_date=*/_manifest.json")):
        return json.loads(manifest.read_text()).get("requests", {})
    return {}


def te_figures(events: list[Event], rate: float, trace: list[dict[str, Any]], state: dict[str, Any],
               reported: dict[str, Any]) -> dict[str, Any]:
    ops = sorted((e for e in events if e[2] == "accountOperations"), key=lambda e: e[0])
    if not ops:
        return {"requests": len(events)}
    t0, t1 = ops[0][0], max(e[1] for e in ops)
    span = max(t1 - t0, 1e-9)
    mid = t0 + span / 2
    ok2 = sum(1 for e in ops if e[1] >= mid and e[3] == 200)
    settled = ok2 / (t1 - mid)
    throttled = [e for e in events if e[3] == 429]
    seconds = int(span) + 1
    ok_per_s = [0] * seconds
    for e in ops:
        if e[3] == 200:
            ok_per_s[min(int(e[1] - t0), seconds - 1)] += 1
    first_429 = next((e[0] - t0 for e in ops if e[3] == 429), None)
    # the busiest pacer is the operations one (the trace does not name collections)
    counts: dict[int, int] = {}
    for x in trace:
        counts[x.get("pacer", 0)] = counts.get(x.get("pacer", 0), 0) + 1
    busiest = max(counts, key=counts.__getitem__) if counts else None
    mine = [x for x in trace if x.get("pacer") == busiest]
    throttles = [x for x in mine if x["ev"] == "throttled"]
    late = [x["rate"] for x in mine if x["ev"] == "rate" and x["t"] >= mid and x["rate"] is not None]
    return {
        "requests": len(events),
        "by_collection": _count(e[2] for e in events),
        "statuses": _count(e[3] for e in events),
        "ops_requests": len(ops),
        "ops_ok": sum(1 for e in ops if e[3] == 200),
        "ops_s": round(span, 2),
        "settled_rps": round(settled, 2),
        "settled_ratio": round(settled / rate, 3),
        "settled_target": TE_SETTLED_TARGET,
        "settled_met": settled / rate >= TE_SETTLED_TARGET,
        "share_429": round(len(throttled) / len(events), 4),
        "throttled_429": len(throttled),
        "throttled_by_collection": _count(e[2] for e in throttled),
        "throttled_target": THROTTLED_TARGET,
        "throttled_met": len(throttled) / len(events) <= THROTTLED_TARGET,
        "blocks": state.get("blocks_total"),
        "blocks_target": TE_BLOCKS_TARGET,
        "blocks_met": (state.get("blocks_total") or 0) <= TE_BLOCKS_TARGET,
        "first_ops_429_s": round(first_429, 2) if first_429 is not None else None,
        "reported_rps": reported.get("settled_rps", {}).get("accountOperations"),
        "reported_settled_rps": reported.get("settled_rps"),
        "reported_limit_met": reported.get("rps_limit_met"),
        "exporter_token_blocks": reported.get("token_blocks"),
        "pacer_429s": len(throttles),
        "pacer_cuts": sum(1 for x in throttles if x["before"] != x["after"]),
        "pacer_refused_probes": sum(1 for x in throttles if x.get("blocked")),
        "pacer_rate_second_half": {"min": round(min(late), 2), "max": round(max(late), 2)} if late else None,
        "pacer_rate_series": [[round(x["t"] - t0, 2), round(x["rate"], 2)] for x in mine
                              if x["ev"] == "rate" and x["rate"] is not None][::4],
        "ok_per_second": ok_per_s,
    }


def keep(folder: Path | None, name: str, events: list[Event], trace: list[dict[str, Any]]) -> None:
    if folder is not None:
        (folder / f"{name}.json").write_text(json.dumps({"events": events, "pacer_trace": trace}))


def _minus(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def _round(x: float | None, digits: int) -> float | None:
    return round(x, digits) if x is not None else None


# --------------------------------------------------------------------------- report


def yes(flag: bool) -> str:
    return "yes" if flag else "**NO**"


def markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    lines = [f"Rates benchmark {meta['finished'][:16]} UTC, {meta['cpus']} CPUs, Python {meta['python']}"
             f"{', quick' if meta['quick'] else ''}.", ""]
    fan = report.get("fanout") or []
    if fan:
        lines += [
            "### Fan-out: TraderEvolution `account_operations`, no rate limit, `rps = 0`",
            "",
            "Achieved = operations requests / (end of the last - arrival of the first), simulator side. "
            "Whole run = the same requests / exporter wall time (start-up, login, listing, publishing included). "
            "Mean in flight = sum of server-side request durations / fan-out time. CPU ms/request = (exporter CPU "
            "- CPU of `exporter --help`) / requests. Both processes share the host's CPUs.",
            "",
            "| C | latency | accounts | requests | fan-out s | achieved req/s | C/L req/s | achieved/(C/L) "
            "| target | met | peak in flight | mean in flight | server ms | whole run req/s | wall s "
            "| exporter CPU s | CPU ms/request | simulator CPU s | valid |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
        ]
        for r in fan:
            lines.append(
                f"| {r['concurrency']} | {r['latency_ms']:g} ms | {r['accounts']:,} | {r['ops_requests']:,} "
                f"| {r.get('fanout_s', 0):.2f} | {r.get('achieved_rps', 0):,.0f} | {r.get('ideal_rps', 0):,.0f} "
                f"| **{r.get('ratio', 0):.3f}** | >= {FANOUT_TARGET:.2f} | {yes(r.get('target_met', False))} "
                f"| {r.get('peak_in_flight_ops')} | {r.get('mean_in_flight_ops')} | {r.get('mean_server_ms')} "
                f"| {r['whole_run_ops_rps']:,.0f} | {r['exporter_wall_s']:.1f} | {r['exporter_cpu_s']} "
                f"| {r['exporter_cpu_ms_per_request']} | {r['sim_cpu_s']} | {yes(r['valid'])} |"
            )
        lines.append("")
    rates = report.get("adaptive") or []
    if rates:
        r0 = rates[0]
        lines += [
            f"### Adaptive rate: Tradesync `accounts`, limit R = {r0['rate_limit']:g}/s (burst {r0['burst']}), "
            f"concurrency {r0['concurrency']}, page_size {r0['page_size']}, {r0['accounts']:,} accounts, "
            f"{r0['latency_ms']:g} ms latency",
            "",
            "Settled = 200 responses/s in the second half of the run. 429 share = 429 answers / all answers.",
            "",
            "| variant | run s | 200 | 429 | overall 200/s | settled 200/s | settled / R (>= 0.90) | 429 share (<= 2%) "
            "| 429 share 2nd half | pacer rate 2nd half (min-mean-max) | cuts | pauses (s) "
            "| most 429s on one request | complete |",
            "|:---|---:|---:|---:|---:|---:|---:|---:|---:|:---|---:|---:|---:|:---:|",
        ]
        for r in rates:
            st = r.get("statuses", {})
            pacer = r.get("pacer", {})
            band = pacer.get("rate_second_half")
            band_text = f"{band['min']:g} - {band['mean']:g} - {band['max']:g}" if band else "unlimited"
            complete = "capped" if r["capped"] else yes(r["valid"])
            att = r.get("attempts", {})
            worst = f"{att.get('max_429s_before_success', 0)}"
            if att.get("never_succeeded"):
                worst += f" ({att['never_succeeded']} never succeeded, up to {att['max_429s_never_succeeded']})"
            lines.append(
                f"| {r['variant']} | {r.get('run_s', 0):.1f} | {st.get('200', 0):,} | {st.get('429', 0):,} "
                f"| {r.get('ok_rps_overall', 0):.1f} | {r.get('settled_rps', 0):.1f} "
                f"| **{r.get('settled_ratio', 0):.2f}** {yes(r.get('settled_met', False))} "
                f"| **{r.get('share_429', 0):.1%}** {yes(r.get('throttled_met', False))} "
                f"| {r.get('share_429_second_half', 0):.1%} | {band_text} | {pacer.get('cuts', 0)} "
                f"| {pacer.get('pauses', 0)} ({pacer.get('pause_s_total', 0):g}) | {worst} | {complete} |"
            )
        lines.append("")
        told = [r for r in rates if r.get("retry_after", {}).get("count")]
        if told:
            lines += [
                "Retry-After, server side: gap from each 429 carrying `Retry-After: N` to the next request on the "
                "same TCP connection (HTTP/1.1: surely sent after that 429 was read) and on any connection (may have "
                "been on its way already); too soon = 429s whose connection carried another request before N.",
                "",
                "Client side: the exporter's pauses (pacer trace, same clock) merged into episodes (one per burst of "
                f"429s). In pipe = arrived within {RA_PIPE_S * 1000:g} ms of the pause (already sent). Early = arrived "
                "later but before the episode ended: sent while told to wait (target 0); split into those within "
                f"{RA_GRACE_S * 1000:g} ms of the pause (had passed the pacer or held a slot before the 429) and those "
                "after the episode's first pause ran out (later 429s had extended it). Late = first request after an "
                "episode minus its end.",
                "",
                "| variant | 429s with RA | N | gap same conn min / median / max s | too soon | gap any conn min / "
                "median s | pause episodes (s) | in pipe | early (min / median / max s before the end) "
                "| early: first 50 ms / after first pause | late min / median / max s |",
                "|:---|---:|:---|:---|---:|:---|---:|---:|:---|:---|:---|",
            ]
            for r in told:
                ra = r["retry_after"]
                g, a = ra["gap_same_connection_s"], ra["gap_any_connection_s"]
                lt, eb = ra["first_request_after_pause_late_s"], ra["early_by_s"]
                values = ", ".join(f"{k} s x{v}" for k, v in ra["values"].items())
                lines.append(
                    f"| {r['variant']} | {ra['count']:,} | {values} | {g['min']} / {g['median']} / {g['max']} "
                    f"| {ra['too_soon_same_connection']} | {a['min']} / {a['median']} "
                    f"| {ra['client_pause_episodes']} ({ra['client_pause_s']}) | {ra['in_pipe_requests']} "
                    f"| **{ra['early_requests']}** ({eb['min']} / {eb['median']} / {eb['max']}) "
                    f"| {ra['early_right_after_pause_began']} / {ra['early_after_first_pause_ended']} "
                    f"| {lt['min']} / {lt['median']} / {lt['max']} |"
                )
            lines.append("")
        lines.append("200 responses per second (first 60 s):")
        lines.append("")
        for r in rates:
            series = " ".join(str(n) for n in r.get("ok_per_second", [])[:60])
            lines.append(f"- {r['variant']}: {series}")
        lines.append("")
    lines += te_markdown(report.get("te") or [])
    return "\n".join(lines)


def te_markdown(runs: list[dict[str, Any]]) -> list[str]:
    if not runs:
        return []
    r0 = runs[0]
    lines = [
        f"### TraderEvolution, `rps = 0`: limit R per collection (burst R), token blocked "
        f"{r0['blocking_duration_s']:g} s after {r0['blocking_threshold']} violations in 60 s; accounts, balances, "
        "equity, account_operations, "
        f"concurrency {r0['concurrency']}, {r0['latency_ms']:g} ms latency",
        "",
        "Settled = 200 responses of `/accountOperations` per second in the second half of its fan-out. 429 share = "
        "429 answers / all requests of the run. Blocks = tokens the simulator blocked. Reported = "
        "`requests.settled_rps.accountOperations` in the manifest (what to configure as `rps`).",
        "",
        "| R | accounts | requests | ops s | settled 200/s | settled / R (>= 0.80) | 429s | 429 share (<= 2%) "
        "| blocks (<= 1) | first 429 at s | reported rps | pacer 429s / cuts / refused probes | complete |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|:---:|",
    ]
    for r in runs:
        lines.append(
            f"| {r['rate_limit']:g} | {r['accounts']:,} | {r.get('requests', 0):,} | {r.get('ops_s', 0):.1f} "
            f"| {r.get('settled_rps', 0):.2f} | **{r.get('settled_ratio', 0):.2f}** {yes(r.get('settled_met', False))} "
            f"| {r.get('throttled_429', 0)} | **{r.get('share_429', 0):.2%}** {yes(r.get('throttled_met', False))} "
            f"| **{r.get('blocks')}** {yes(r.get('blocks_met', False))} | {r.get('first_ops_429_s')} "
            f"| {r.get('reported_rps')} | {r.get('pacer_429s')} / {r.get('pacer_cuts')} / "
            f"{r.get('pacer_refused_probes')} | {'capped' if r['capped'] else yes(r['valid'])} |"
        )
    lines += ["", "`/accountOperations` 200 responses per second:", ""]
    for r in runs:
        lines.append(f"- R = {r['rate_limit']:g}: " + " ".join(str(n) for n in r.get("ok_per_second", [])))
    lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description="exporter request rates: fan-out and adaptive rate limiting")
    parser.add_argument("--quick", action="store_true", help="a short version (~40 s)")
    parser.add_argument("--only", choices=("fanout", "adaptive", "te"), help="run one of the three measurements")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="folder for rates.json and rates.md (rates-te.* with --only te)")
    parser.add_argument("--keep-events", action="store_true",
                        help="also write each run's request log and pacer trace to RESULTS/rates-events/")
    args = parser.parse_args()
    plan = plan_for(args.quick)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind, so simulators are stopped
    results_dir: Path = args.results
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = "rates-te" if args.only == "te" else "rates"
    log = results_dir / f"{stem}-simulator.log"
    log.write_text("")
    keep_dir = results_dir / "rates-events" if args.keep_events else None
    if keep_dir is not None:
        keep_dir.mkdir(exist_ok=True)
    started = datetime.now(UTC)
    subprocess.run([sys.executable, "-c", "import aiohttp, orjson, pyarrow.parquet, exporter.cli"], check=True)
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="brokerexport-rates-") as tmp:
        work = Path(tmp)
        if args.only in (None, "fanout"):
            report["fanout"] = fanout(plan, work, log, keep_dir)
        if args.only in (None, "adaptive"):
            report["adaptive"] = adaptive(plan, work, log, keep_dir)
        if args.only in (None, "te"):
            report["te"] = te_probing(plan, work, log, keep_dir)
    report = {
        "meta": {
            "started": started.isoformat(),
            "finished": datetime.now(UTC).isoformat(),
            "host": platform.node(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "quick": args.quick,
            "plan": plan.__dict__,
            "fanout_rate": "operations requests / (last end - first arrival), from the simulator's request log",
            "settled": "200 responses in the second half of the run (by response time) / its duration",
        },
        **report,
    }
    publish(results_dir, stem, report, markdown(report))
    runs = report.get("fanout", []) + report.get("adaptive", []) + report.get("te", [])
    if not all(r["valid"] for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    run_main(main)
