"""Chaos suite over real loopback HTTP: kills, faults, interrupts and a full disk, then resume.

Every test compares the published snapshot with the rows of one clean run of the same job
(sorted by id, ``snapshot_at``/``snapshot_date`` left out): resuming must neither lose nor
duplicate a row.
"""

from __future__ import annotations

import bisect
import errno
import json
import math
import random
import shutil
import signal
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from exporter.errors import CheckpointError
from exporter.runner import RunOptions
from exporter.sandbox._sim_base import ChaosPlanner
from exporter.sandbox.tradesync import ALL_FAULTS, TradesyncSimConfig
from exporter.sink import DatasetSink, DatasetWriter

from .chaos_helpers import (
    LoggedRequest,
    checkpoint_path,
    command_error,
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
STREAM_DATASETS = {"tradesync/accounts": ("accounts", "balances", "equity"), "tradesync/trades": ("trades",)}
KEYS = {"accounts": "id", "trades": "id", "balances": "account_id", "equity": "account_id"}

# Requests one SIGKILL can cost: pages fetched whose rows were not durable yet. Per stream, with the
# RunOptions defaults the CLI uses (queue_pages, convert_ahead, batch_rows: B):
#   written since the stream's last checkpoint: fewer than ROWS_PER_FILE rows before the last write,
#     which adds one batch of < B + PAGE_SIZE rows: ceil((ROWS_PER_FILE + B) / PAGE_SIZE) full pages;
#   converting: convert_ahead batches of at most ceil(B / PAGE_SIZE) full pages each;
#   waiting in the queue: queue_pages;
#   one per walker, on the wire or waiting for room in the queue: WALKS;
#   short pages: only the last page of an id range is short, and KeysetCollection cuts each
#     collection into 4 x WALKS ranges;
#   the two edge probes (order=desc/asc, limit=1) while the id-range plan is not saved yet.
_DEFAULTS = RunOptions(output=Path())
_BATCH_ROWS = getattr(_DEFAULTS, "batch_rows", 0)
_PAGES_PER_BATCH = max(1, math.ceil(_BATCH_ROWS / PAGE_SIZE))
PER_STREAM = (
    math.ceil((ROWS_PER_FILE + _BATCH_ROWS) / PAGE_SIZE)
    + getattr(_DEFAULTS, "convert_ahead", 0) * _PAGES_PER_BATCH
    + _DEFAULTS.queue_pages
    + WALKS
    + 4 * WALKS
    + 2
)
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
        run(chaos_job(), output, tradesync_env(url))
        expected_trades = sum(1 for _ in simulator.expected_trades())
    rows = {d: dataset_rows(output, d) for d in DATASETS}
    assert len(rows["accounts"]) == ACCOUNTS and len(rows["trades"]) == expected_trades
    return Clean(output, rows, list(log.entries))


class RowsDuplicated(AssertionError):
    """A published dataset holds some id more than once."""


class RowsLost(AssertionError):
    """A published dataset lacks ids the clean run has."""


def assert_equals_clean(output: Path, clean: Clean, datasets: tuple[str, ...] = DATASETS) -> None:
    """Each dataset holds every id of the clean run exactly once, with identical values."""
    for dataset in datasets:
        got = dataset_rows(output, dataset)
        ids = [row[KEYS[dataset]] for row in got]
        if len(ids) != len(set(ids)):
            raise RowsDuplicated(f"{dataset}: {len(ids) - len(set(ids))} rows published twice")
        missing = {row[KEYS[dataset]] for row in clean.rows[dataset]} - set(ids)
        if missing:
            raise RowsLost(f"{dataset}: {len(missing)} rows missing, e.g. {sorted(missing)[:3]}")
        assert got == clean.rows[dataset], dataset


def copy_snapshot(clean: Clean, output: Path) -> dict[Path, tuple[int, int]]:
    """Give ``output`` a previous published snapshot (the clean one) and return its files."""
    shutil.copytree(clean.output / "tradesync", output / "tradesync")
    return published_files(output)


def chaos_job(**settings: Any) -> Any:
    """The job of the job files below, for in-process runs (same name and fingerprint)."""
    return make_job({"tradesync": {**SETTINGS, **settings}}, name=JOB, rows_per_file=ROWS_PER_FILE)


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


def checkpoint_mismatches(checkpoint: dict[str, Any], clean: Clean) -> dict[str, tuple[int, int]]:
    """Datasets whose durable part files do not hold exactly the rows their stream's durable walk
    covered: ``{dataset: (rows in parts, rows covered)}``. More rows than covered means they will
    be fetched and written again (duplicates); fewer means rows are lost."""
    out = {}
    for stream, datasets in STREAM_DATASETS.items():
        ranges = checkpoint["streams"].get(stream, {}).get("walk", {}).get("ranges") or {}
        for dataset in datasets:
            ids = [row[KEYS[dataset]] for row in clean.rows[dataset]]
            covered = 0
            for piece in ranges.values():
                upper = piece["stop_at"] if piece["done"] else min(piece["cursor"], piece["stop_at"])
                covered += bisect.bisect_right(ids, upper) - bisect.bisect_right(ids, piece["start_after"])
            parts = checkpoint["datasets"].get(f"tradesync/{dataset}", {}).get("parts", [])
            recorded = sum(p["rows"] for p in parts)
            if recorded != covered:
                out[dataset] = (recorded, covered)
    return out


# --------------------------------------------------------------------------- 1. SIGKILL and resume


def test_sigkill_at_seeded_points_then_resume_publishes_the_clean_rows(clean: Clean, tmp_path: Path) -> None:
    rng = random.Random(20250131)
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
                n = rng.randint(20, 40)
                process = start_exporter(cli_args(job_file, output, *flags), env)
                wait_for(lambda a=attempt, n=n: log.count(a) >= n, timeout=60, process=process,
                         what=f"attempt {attempt} to send {n} requests")
                process.kill()
                _, stderr = process.communicate(timeout=30)
            else:
                k = rng.randint(3, 12) if mode == "write" else rng.randint(3, 8)
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
            mismatches = checkpoint_mismatches(checkpoint, clean)
            assert not mismatches, f"after attempt {attempt} ({mode}) the checkpoint disagrees: {mismatches}"
            if checkpoints:
                assert checkpoint["run_id"] == checkpoints[0]["run_id"], "a kill made the next attempt start over"
                assert durable_rows(checkpoint) >= durable_rows(checkpoints[-1])
            checkpoints.append(checkpoint)

        final = len(modes) + 1
        log.attempt = final
        simulator.config.latency_ms = 0  # a behaviour knob: the last attempt need not be slow
        # in-process, the same job: RunOptions.resume "require" is --resume, "auto" the default
        resume = "require" if final == with_resume_flag else "auto"
        run(chaos_job(), output, tradesync_env(url), resume=resume)
        assert simulator.state()["requests_total"] == len(log.entries)

    assert_equals_clean(output, clean)
    for dataset in DATASETS:
        meta = manifest(output, dataset)
        assert meta["run_id"] == checkpoints[0]["run_id"]
        assert meta["resumed"] == len(modes)
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


def test_kill_between_part_files_and_progress_does_not_duplicate_rows(clean: Clean, tmp_path: Path) -> None:
    """The accounts stream has closed its part files; the trades stream saves the checkpoint before
    accounts records them; then SIGKILL. The saved checkpoint must still agree with itself."""
    job_file = write_job(tmp_path / "chaos.toml", JOB, rows_per_file=ROWS_PER_FILE, **SETTINGS)
    output = tmp_path / "out"
    with logged_simulator(sim_config()) as (url, _, _log):
        process = start_exporter(cli_args(job_file, output), exporter_env(url), kill_point="race:1")
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == -signal.SIGKILL, stderr[-3000:]
        checkpoint = read_checkpoint(output, JOB)
        assert checkpoint is not None and durable_rows(checkpoint) > 0
        assert not checkpoint_mismatches(checkpoint, clean)
        run(chaos_job(), output, tradesync_env(url))
    assert_equals_clean(output, clean)


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
    with logged_simulator(config) as (url, simulator, _):
        result = run(chaos_job(page_size=500, max_attempts=40), tmp_path, tradesync_env(url))
        state = simulator.state()
    assert_equals_clean(tmp_path, clean)
    # the faults really happened, every kind of them, and the rate limit answered 429 on its own
    planner = ChaosPlanner(config.seed, config.latency_ms, config.latency_jitter_ms, config.error_rate,
                           config.fail_every_n, config.fault_kinds)
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
    with logged_simulator(sim_config(latency_ms=20)) as (url, simulator, log):
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
        simulator.config.latency_ms = 0
        run(chaos_job(), output, tradesync_env(url), resume="require")  # what --resume does
        assert not refetched_durable_pages(log.of(2), checkpoint)
    assert_equals_clean(output, clean)
    assert manifest(output, "accounts")["resumed"] == 1


# --------------------------------------------------------------------------- 4. disk full


REAL_WRITE_TABLE = pq.ParquetWriter.write_table


class FullDisk:
    """``ParquetWriter.write_table`` that fails with ENOSPC from its ``after + 1``-th call on."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.calls = 0
        self.original = REAL_WRITE_TABLE

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
    job = chaos_job()
    staging = output / "_staging" / JOB
    with logged_simulator(sim_config()) as (url, _, log):
        env = tradesync_env(url)
        log.attempt = 1
        FullDisk(after=8).install(monkeypatch)
        with pytest.raises(OSError) as failure:
            run(job, output, env)
        assert failure.value.errno == errno.ENOSPC
        assert published_files(output) == before, "a partial snapshot was published"
        first = read_checkpoint(output, JOB)
        assert first is not None and durable_rows(first) > 0, "the checkpoint was lost"
        assert not list(staging.rglob("*.inprogress")), "the unfinished part file was left behind"

        # the command line: exit 1 and one line saying the disk is full (the checkpoint is kept)
        log.attempt = 2
        FullDisk(after=4).install(monkeypatch)
        line = command_error(job, output, env, 1, monkeypatch, capsys)
        assert "disk full" in line and "rerun" in line, line
        assert published_files(output) == before
        second = read_checkpoint(output, JOB)
        assert second is not None and second["run_id"] == first["run_id"]
        assert not refetched_durable_pages(log.of(2), first)

        monkeypatch.undo()  # space freed
        log.attempt = 3
        result = run(job, output, env)
        assert not refetched_durable_pages(log.of(3), second)
    assert result.resumed == 2 and result.run_id == first["run_id"]
    assert_equals_clean(output, clean)
    assert not staging.exists()


class AbortedWhileWriting(AssertionError):
    """A failing run tore down a part file writer that another thread was writing with."""


def test_a_failing_stream_does_not_abort_writers_still_in_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trades stream is inside DatasetWriter.write when the accounts stream hits a full disk.
    An abort that does not wait for running writes closes the ParquetWriter under them: once in ~20
    such failures inside pyarrow's write_table, and the process dies with SIGSEGV instead of exiting
    1 with "disk full". Here the trades write holds on until the failure is raised and then up to 1 s
    for an abort, so such an abort is caught every time."""
    writing: set[int] = set()
    overlapped: list[str] = []
    trades_paused, failed, trades_aborted = threading.Event(), threading.Event(), threading.Event()
    real_write, real_abort, real_add = DatasetWriter.write, DatasetWriter.abort, DatasetSink.add

    def is_trades(writer: DatasetWriter) -> bool:
        return "trades" in writer.partition.split("/")

    def write(self: DatasetWriter, table: Any) -> None:
        writing.add(id(self))
        try:
            if is_trades(self) and not trades_paused.is_set():
                trades_paused.set()
                assert failed.wait(timeout=30), "the accounts stream never failed"
                trades_aborted.wait(timeout=1)
            real_write(self, table)
        finally:
            writing.discard(id(self))

    def abort(self: DatasetWriter) -> None:
        if id(self) in writing:
            overlapped.append(str(self.directory))
        real_abort(self)
        if is_trades(self):
            trades_aborted.set()

    def add(self: Any, table: Any, converted: Any, page: Any) -> None:
        if self.key == "tradesync/accounts" and trades_paused.is_set():
            failed.set()
            raise OSError(errno.ENOSPC, "No space left on device")
        real_add(self, table, converted, page)

    monkeypatch.setattr(DatasetWriter, "write", write)
    monkeypatch.setattr(DatasetWriter, "abort", abort)
    monkeypatch.setattr(DatasetSink, "add", add)
    with logged_simulator(sim_config()) as (url, _, _log), pytest.raises(OSError) as failure:
        run(chaos_job(), tmp_path, tradesync_env(url))
    assert failure.value.errno == errno.ENOSPC and trades_paused.is_set()
    if overlapped:
        raise AbortedWhileWriting(f"abort() ran while a write was in progress: {overlapped}")


# --------------------------------------------------------------------------- 5. incompatible checkpoint


def test_checkpoint_of_another_job_definition_is_refused_until_fresh(
    clean: Clean, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out"
    job_file = write_job(tmp_path / "chaos.toml", JOB, rows_per_file=ROWS_PER_FILE, **SETTINGS)
    with logged_simulator(sim_config(latency_ms=20)) as (url, simulator, _):
        env = exporter_env(url)
        interrupted = start_exporter(cli_args(job_file, output), env)
        wait_for(lambda: durable_rows(read_checkpoint(output, JOB)) > 0, timeout=60, process=interrupted,
                 what="a first durable part file")
        interrupted.kill()
        interrupted.communicate(timeout=30)
        saved = checkpoint_path(output, JOB).read_bytes()
        simulator.config.latency_ms = 0

        changed = write_job(tmp_path / "chaos.toml", JOB, rows_per_file=ROWS_PER_FILE,
                            **{**SETTINGS, "page_size": PAGE_SIZE * 2})
        refused = run_exporter(cli_args(changed, output, "--resume"), env)
        assert refused.returncode == 2, refused.stderr[-3000:]
        lines = error_lines(refused.stderr)
        assert len(lines) == 1 and "--fresh" in lines[0] and "Traceback" not in refused.stderr, refused.stderr
        # the default (resume if possible) refuses too, through the same exit-code mapping
        line = command_error(chaos_job(page_size=PAGE_SIZE * 2), output, tradesync_env(url), 2, monkeypatch, capsys)
        assert "--fresh" in line, line
        with pytest.raises(CheckpointError, match="--fresh"):  # another set of datasets
            run(chaos_job(datasets=["accounts", "trades"]), output, tradesync_env(url))
        assert checkpoint_path(output, JOB).read_bytes() == saved, "a refused run touched the checkpoint"
        assert published_files(output) == {}

        fresh = run_exporter(cli_args(changed, output, "--fresh"), env)
        assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert_equals_clean(output, clean)
    assert manifest(output, "trades")["resumed"] == 0
    assert json.loads(saved)["run_id"] != manifest(output, "trades")["run_id"]


def test_resumed_counts_every_resumed_attempt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = chaos_job()
    with logged_simulator(sim_config()) as (url, _, _log):
        env = tradesync_env(url)
        FullDisk(after=8).install(monkeypatch)
        with pytest.raises(OSError):
            run(job, tmp_path, env)  # leaves a checkpoint with durable parts
        FullDisk(after=0).install(monkeypatch)
        with pytest.raises(OSError):
            run(job, tmp_path, env)  # resumed, then failed at its first write
        monkeypatch.undo()
        result = run(job, tmp_path, env)
    assert result.resumed == 2
    assert manifest(tmp_path, "accounts")["resumed"] == 2
