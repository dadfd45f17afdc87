"""Chaos suite over real loopback HTTP: kills, faults, interrupts and a full disk, then resume.

Every test compares the published snapshot with the rows of one clean run of the same job
(sorted by id, ``snapshot_at``/``snapshot_date`` left out): resuming must neither lose nor
duplicate a row.
"""

from __future__ import annotations

import errno
import json
import math
import random
import shutil
import signal
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from exporter.cli import execute
from exporter.errors import CheckpointError
from exporter.runner import RunOptions
from exporter.sandbox._sim_base import ChaosPlanner
from exporter.sandbox.tradesync import ALL_FAULTS, TradesyncSimConfig

from .chaos_helpers import (
    LoggedRequest,
    checkpoint_path,
    dataset_rows,
    durable_rows,
    error_lines,
    exporter_env,
    logged_simulator,
    manifest,
    published_files,
    read_checkpoint,
    run_exporter,
    start_exporter,
    wait_for,
    write_job,
)
from .helpers import make_job, run, tradesync_env

JOB = "chaos"
ACCOUNTS = 6000
TRADES_PER_ACCOUNT = 2
PAGE_SIZE = 200
ROWS_PER_FILE = 1000
WALKS = 2  # parallel_walks: id ranges walked at once per collection
CONCURRENCY = 4
SETTINGS = {"concurrency": CONCURRENCY, "page_size": PAGE_SIZE, "parallel_walks": WALKS}
DATASETS = ("accounts", "balances", "equity", "trades")
STREAMS = {"/accounts": "tradesync/accounts", "/trades": "tradesync/trades"}

# Requests one SIGKILL can cost, i.e. fetched pages that were not durable yet. Per stream:
#   pages consumed since the stream's last checkpoint: < ROWS_PER_FILE rows, so at most
#     ceil(ROWS_PER_FILE / PAGE_SIZE) full pages (the one being written included), plus the short
#     last page of each id range: KeysetCollection cuts a collection into 4 x WALKS ranges;
#   pages waiting in the runner's queue: RunOptions.queue_pages (16, what the CLI uses);
#   one page per walker, in flight or blocked on the full queue: WALKS;
#   the two edge probes (order=desc/asc, limit=1) while the id-range plan is not saved yet.
QUEUE_PAGES = RunOptions(output=Path()).queue_pages
PER_STREAM = math.ceil(ROWS_PER_FILE / PAGE_SIZE) + 4 * WALKS + QUEUE_PAGES + WALKS + 2
LOST_PER_KILL = len(STREAMS) * PER_STREAM


def sim_config(**behaviour: Any) -> TradesyncSimConfig:
    """The data set of every test here (behaviour knobs such as latency and faults vary)."""
    return TradesyncSimConfig(
        accounts=ACCOUNTS, trades_per_account=TRADES_PER_ACCOUNT, **{"rate_limit_rps": 0, **behaviour}
    )


@dataclass
class Clean:
    output: Path
    rows: dict[str, list[dict[str, Any]]]
    requests: list[LoggedRequest]


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Clean:
    """One uninterrupted run of the job, no faults: the reference every test compares with."""
    output = tmp_path_factory.mktemp("clean")
    with logged_simulator(sim_config()) as (url, simulator, log):
        run(make_job({"tradesync": SETTINGS}, name=JOB, rows_per_file=ROWS_PER_FILE), output, tradesync_env(url))
        expected_trades = sum(1 for _ in simulator.expected_trades())
    rows = {d: dataset_rows(output, d) for d in DATASETS}
    assert len(rows["accounts"]) == ACCOUNTS and len(rows["trades"]) == expected_trades
    return Clean(output, rows, list(log.entries))


def assert_equals_clean(output: Path, clean: Clean) -> None:
    for dataset in DATASETS:
        got = dataset_rows(output, dataset)
        key = "id" if dataset in ("accounts", "trades") else "account_id"
        ids = [row[key] for row in got]
        assert len(ids) == len(set(ids)), f"{dataset}: duplicated ids"
        assert len(got) == len(clean.rows[dataset]), dataset
        assert got == clean.rows[dataset], dataset


def copy_snapshot(clean: Clean, output: Path) -> dict[Path, tuple[int, int]]:
    """Give ``output`` a previous published snapshot (the clean one) and return its files."""
    shutil.copytree(clean.output / "tradesync", output / "tradesync")
    return published_files(output)


def cli_args(job_file: Path, output: Path, *flags: str) -> list[str]:
    return ["run", str(job_file), "--output", str(output), *flags]


# --------------------------------------------------------------------------- request accounting


def _range_of(ranges: dict[str, dict[str, Any]], last_id: int) -> dict[str, Any]:
    found = [r for r in ranges.values() if r["start_after"] <= last_id < r["stop_at"]]
    assert len(found) == 1, (last_id, found)
    return found[0]


def lost_requests(requests: list[LoggedRequest], checkpoint: dict[str, Any]) -> list[LoggedRequest]:
    """The requests whose pages the checkpoint does not hold: a resumed run must send them again."""
    lost = []
    for request in requests:
        ranges = checkpoint["streams"].get(STREAMS[request.path], {}).get("walk", {}).get("ranges")
        if ranges is None or "last_id" not in request.params:
            if ranges is None:
                lost.append(request)  # no plan saved: probes and pages alike start over
            continue
        piece = _range_of(ranges, int(request.params["last_id"]))
        if not piece["done"] and int(request.params["last_id"]) >= piece["cursor"]:
            lost.append(request)
    return lost


def refetched_durable_pages(requests: list[LoggedRequest], checkpoint: dict[str, Any]) -> list[LoggedRequest]:
    """Requests for pages the checkpoint already held (a correct resume sends none)."""
    out = []
    for request in requests:
        ranges = checkpoint["streams"].get(STREAMS[request.path], {}).get("walk", {}).get("ranges")
        if ranges is None:
            continue
        if "last_id" not in request.params:
            out.append(request)  # the plan is saved: probing the id range again is a re-fetch
            continue
        piece = _range_of(ranges, int(request.params["last_id"]))
        if piece["done"] or int(request.params["last_id"]) < piece["cursor"]:
            out.append(request)
    return out


# --------------------------------------------------------------------------- 1. SIGKILL and resume


def test_sigkill_at_seeded_points_then_resume_publishes_the_clean_rows(clean: Clean, tmp_path: Path) -> None:
    import os; rng = random.Random(int(os.environ.get("CHAOS_SEED", "20250131")))  # TEMP
    # two kills after N requests (from outside), one torn part file, one torn checkpoint write
    modes = ["requests", "requests", "write", "checkpoint"]
    rng.shuffle(modes)
    with_resume_flag = rng.randint(2, len(modes) + 1)  # this attempt passes --resume, the others resume by default
    job_file = write_job(tmp_path / "chaos.toml", JOB, rows_per_file=ROWS_PER_FILE, **SETTINGS)
    output = tmp_path / "out"
    checkpoints: list[dict[str, Any]] = []
    with logged_simulator(sim_config(latency_ms=20)) as (url, simulator, log):
        env = exporter_env(url)
        for attempt, mode in enumerate(modes, start=1):
            log.attempt = attempt
            flags = ["--resume"] if attempt == with_resume_flag else []
            if mode == "requests":
                n = rng.randint(20, 45)
                process = start_exporter(cli_args(job_file, output, *flags), env)
                wait_for(lambda a=attempt, n=n: log.count(a) >= n, timeout=60, process=process,
                         what=f"attempt {attempt} to send {n} requests")
                process.kill()
                _, stderr = process.communicate(timeout=30)
            else:
                k = rng.randint(3, 12)
                process = start_exporter(cli_args(job_file, output, *flags), env, kill_point=f"{mode}:{k}")
                _, stderr = process.communicate(timeout=60)
            assert process.returncode == -signal.SIGKILL, (attempt, mode, stderr[-3000:])
            assert published_files(output) == {}, "a killed run published something"
            checkpoint = read_checkpoint(output, JOB)
            assert checkpoint is not None, "checkpoint.json missing or torn after a kill"
            staging = output / "_staging" / JOB
            if mode == "write":
                assert list(staging.rglob("*.parquet.inprogress")), "the kill did not land mid part file"
            if mode == "checkpoint":
                torn = staging / ".checkpoint.json.tmp"
                assert torn.exists() and torn.read_bytes() and not _is_json(torn), "no torn checkpoint write"
            if checkpoints:
                assert checkpoint["run_id"] == checkpoints[0]["run_id"], "a kill made the next attempt start over"
                assert durable_rows(checkpoint) >= durable_rows(checkpoints[-1])
            checkpoints.append(checkpoint)

        final = len(modes) + 1
        log.attempt = final
        flags = ["--resume"] if final == with_resume_flag else []
        done = run_exporter(cli_args(job_file, output, *flags), env)
        assert done.returncode == 0, done.stderr[-3000:]
        assert simulator.state()["requests_total"] == len(log.entries)

    assert_equals_clean(output, clean)
    for dataset in DATASETS:
        meta = manifest(output, dataset)
        assert meta["run_id"] == checkpoints[0]["run_id"]
        # an attempt killed before its first checkpoint save is not counted (see the xfail test below)
        assert 1 <= meta["resumed"] <= len(modes)
    assert not (output / "_staging" / JOB).exists()

    # Resuming never asks again for a page the checkpoint held, and every kill cost at most
    # LOST_PER_KILL requests (the pages fetched since the last checkpoint).
    for attempt, checkpoint in enumerate(checkpoints, start=1):
        lost = lost_requests(log.of(attempt), checkpoint)
        print(f"attempt {attempt} ({modes[attempt - 1]}): {log.count(attempt)} requests, {len(lost)} lost, "
              f"{durable_rows(checkpoint)} rows durable")
        assert len(lost) <= LOST_PER_KILL, (attempt, len(lost), LOST_PER_KILL)
        again = refetched_durable_pages(log.of(attempt + 1), checkpoint)
        assert not again, f"attempt {attempt + 1} re-fetched pages the checkpoint held: {again[:5]}"
    clean_total = len(clean.requests)
    assert {e.key for e in log.entries} == {e.key for e in clean.requests}
    assert len(log.entries) <= clean_total + len(modes) * LOST_PER_KILL, (len(log.entries), clean_total)


def _is_json(path: Path) -> bool:
    try:
        json.loads(path.read_bytes())
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- 2. faults and rate limit


def test_faults_of_every_kind_and_a_rate_limit_give_the_clean_rows(clean: Clean, tmp_path: Path) -> None:
    config = sim_config(latency_ms=10, error_rate=0.2, fault_kinds=ALL_FAULTS, rate_limit_rps=60,
                        rate_limit_burst=3)
    # pages of 500: ~100 requests, enough for every fault kind, and a run of a few seconds (the
    # adaptive pacer slows right down under 20% of 429s)
    settings = {**SETTINGS, "page_size": 500, "max_attempts": 40}
    with logged_simulator(config) as (url, simulator, _):
        job = make_job({"tradesync": settings}, name=JOB, rows_per_file=ROWS_PER_FILE)
        result = run(job, tmp_path, tradesync_env(url))
        state = simulator.state()
    assert_equals_clean(tmp_path, clean)
    # the faults really happened, every kind of them, and the rate limit answered 429 on its own
    planner = ChaosPlanner(config.seed, config.latency_ms, 0, config.error_rate, 0, config.fault_kinds)
    planned = Counter(planner.plan(seq).fault for seq in range(1, state["requests_total"] + 1))
    assert set(ALL_FAULTS) <= set(planned), planned
    assert state["faults_injected"] >= 15
    # an injected fault never exceeds its plan, so 429s beyond the planned ones came from the limit
    planned_429 = planned["429"] + planned["429-retry-after"]
    assert state["responses_by_status"].get("429", 0) > planned_429, (state, planned)
    stats = result.requests["tradesync"]
    # every injected fault is answered by a retry, except drops that aiohttp itself may resend
    assert stats["retries"] >= state["faults_injected"] - planned["drop"]


# --------------------------------------------------------------------------- 3. SIGINT


def test_sigint_exits_130_with_one_resume_line_and_rerun_completes(clean: Clean, tmp_path: Path) -> None:
    job_file = write_job(tmp_path / "chaos.toml", JOB, rows_per_file=ROWS_PER_FILE, **SETTINGS)
    output = tmp_path / "out"
    before = copy_snapshot(clean, output)
    with logged_simulator(sim_config(latency_ms=20)) as (url, _, log):
        env = exporter_env(url)
        log.attempt = 1
        process = start_exporter(cli_args(job_file, output), env)
        wait_for(lambda: durable_rows(read_checkpoint(output, JOB)) > 0, timeout=60, process=process,
                 what="a first durable part file")
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 130, stderr[-3000:]
        lines = error_lines(stderr)
        assert len(lines) == 1 and "--resume" in lines[0], stderr[-3000:]
        assert "Traceback" not in stderr
        assert published_files(output) == before, "the previous snapshot changed"
        checkpoint = read_checkpoint(output, JOB)
        assert checkpoint is not None
        # it stopped fetching: far from done, and what it had fetched is in the checkpoint, except
        # the pages still on the wire or waiting for room in the queue (one per walker) and probes
        assert log.count(1) < len(clean.requests)
        lost = lost_requests(log.of(1), checkpoint)
        assert len(lost) <= len(STREAMS) * (WALKS + 2), lost

        log.attempt = 2
        done = run_exporter(cli_args(job_file, output, "--resume"), env)
        assert done.returncode == 0, done.stderr[-3000:]
        assert not refetched_durable_pages(log.of(2), checkpoint)
    assert_equals_clean(output, clean)
    assert manifest(output, "accounts")["resumed"] == 1


# --------------------------------------------------------------------------- 4. disk full


class FullDisk:
    """``ParquetWriter.write_table`` that fails with ENOSPC from its ``after + 1``-th call on."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.calls = 0
        self.original = pq.ParquetWriter.write_table

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        disk = self

        def write_table(writer: Any, table: Any, row_group_size: int | None = None) -> None:
            disk.calls += 1
            if disk.calls > disk.after:
                raise OSError(errno.ENOSPC, "No space left on device")
            disk.original(writer, table, row_group_size=row_group_size)

        monkeypatch.setattr(pq.ParquetWriter, "write_table", write_table)


def test_full_disk_fails_without_publishing_and_resumes_once_space_is_freed(
    clean: Clean, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out"
    before = copy_snapshot(clean, output)
    job = make_job({"tradesync": SETTINGS}, name=JOB, rows_per_file=ROWS_PER_FILE)
    staging = output / "_staging" / JOB
    with logged_simulator(sim_config()) as (url, _, log):
        env = tradesync_env(url)
        log.attempt = 1
        FullDisk(after=12).install(monkeypatch)
        with pytest.raises(OSError) as failure:
            run(job, output, env)
        assert failure.value.errno == errno.ENOSPC
        assert published_files(output) == before, "a partial snapshot was published"
        first = read_checkpoint(output, JOB)
        assert first is not None and durable_rows(first) > 0, "the checkpoint was lost"
        assert not list(staging.rglob("*.inprogress")), "the unfinished part file was left behind"

        # the command line: exit 1 and one line saying the disk is full (the checkpoint is kept)
        log.attempt = 2
        for name, value in env.items():
            monkeypatch.setenv(name, value)  # the CLI reads the credentials from the environment
        FullDisk(after=6).install(monkeypatch)
        with pytest.raises(SystemExit) as exit_info:
            execute(job, output, "auto", "text")
        assert exit_info.value.code == 1
        lines = error_lines(capsys.readouterr().err)
        assert len(lines) == 1 and "disk full" in lines[0] and "rerun" in lines[0], lines
        assert published_files(output) == before
        second = read_checkpoint(output, JOB)
        assert second is not None and second["run_id"] == first["run_id"]
        assert not refetched_durable_pages(log.of(2), first)

        monkeypatch.undo()  # space freed
        log.attempt = 3
        result = run(job, output, env)
        assert not refetched_durable_pages(log.of(3), second)
    # resumed is >= 1, not 2: an attempt that fails before its first save is not counted (xfail below)
    assert result.resumed >= 1 and result.run_id == first["run_id"]
    assert_equals_clean(output, clean)
    assert not staging.exists()


# --------------------------------------------------------------------------- 5. incompatible checkpoint


def test_checkpoint_of_another_job_definition_is_refused_until_fresh(clean: Clean, tmp_path: Path) -> None:
    output = tmp_path / "out"
    job_file = write_job(tmp_path / "chaos.toml", JOB, rows_per_file=ROWS_PER_FILE, max_attempts=1, **SETTINGS)
    with logged_simulator(sim_config(fail_every_n=60)) as (url, simulator, _):
        env = exporter_env(url)
        interrupted = run_exporter(cli_args(job_file, output), env)
        assert interrupted.returncode == 1, interrupted.stderr[-3000:]
        assert "failed after 1 attempts" in interrupted.stderr
        saved = checkpoint_path(output, JOB).read_bytes()
        assert durable_rows(json.loads(saved)) > 0
        simulator.config.fail_every_n = 0

        changed = write_job(tmp_path / "chaos.toml", JOB, rows_per_file=ROWS_PER_FILE,
                            **{**SETTINGS, "page_size": PAGE_SIZE // 2})
        for flags in ([], ["--resume"]):
            refused = run_exporter(cli_args(changed, output, *flags), env)
            assert refused.returncode == 2, (flags, refused.stderr[-3000:])
            lines = error_lines(refused.stderr)
            assert len(lines) == 1 and "--fresh" in lines[0] and "Traceback" not in refused.stderr, refused.stderr
        assert checkpoint_path(output, JOB).read_bytes() == saved, "a refused run touched the checkpoint"

        fewer = make_job({"tradesync": {**SETTINGS, "datasets": ["accounts", "trades"]}}, name=JOB,
                         rows_per_file=ROWS_PER_FILE)
        with pytest.raises(CheckpointError, match="--fresh"):
            run(fewer, output, tradesync_env(url))
        assert published_files(output) == {}

        fresh = run_exporter(cli_args(changed, output, "--fresh"), env)
        assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert_equals_clean(output, clean)
    assert manifest(output, "trades")["resumed"] == 0
    assert json.loads(saved)["run_id"] != manifest(output, "trades")["run_id"]


@pytest.mark.xfail(strict=True, reason="Checkpoint.load increments 'resumed' only in memory: an attempt that fails "
                   "before its first checkpoint save is not counted")
def test_resumed_counts_every_resumed_attempt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = make_job({"tradesync": SETTINGS}, name=JOB, rows_per_file=ROWS_PER_FILE)
    with logged_simulator(sim_config()) as (url, _, _log):
        env = tradesync_env(url)
        FullDisk(after=12).install(monkeypatch)
        with pytest.raises(OSError):
            run(job, tmp_path, env)  # leaves a checkpoint with durable parts
        FullDisk(after=0).install(monkeypatch)
        with pytest.raises(OSError):
            run(job, tmp_path, env)  # resumed, then failed at its first write
        monkeypatch.undo()
        result = run(job, tmp_path, env)
    assert result.resumed == 2
    assert manifest(tmp_path, "accounts")["resumed"] == 2
