"""Shared pieces of the chaos tests: a simulator that logs every request, job files, exporter
subprocesses, snapshot readers, and kill points armed inside an exporter process.

Run as a script this module *is* the exporter command line, with one kill point armed::

    python tests/chaos_helpers.py write:3 -- run JOB --output DIR

``write:K``      SIGKILL inside the K-th ``ParquetWriter.write_table`` call, after the rows went to the
                 open ``part-*.parquet.inprogress`` file and before its footer: a torn part file.
``checkpoint:K`` SIGKILL in the middle of writing the K-th checkpoint: half of the new
                 ``.checkpoint.json.tmp`` is on disk, ``checkpoint.json`` is not yet replaced.
``commit:STEP:K`` SIGKILL at a step of the commit protocol, the K-th time it is reached: ``journal``
                 (the commit record written, nothing visible), ``swap`` (local: after a partition
                 swap), ``complete`` / ``manifest`` (object storage: after an upload is completed, a
                 manifest written), ``cleanup`` (all published, nothing cleaned), ``cleanup-mid``.
``race:K``       at the accounts stream's K-th checkpoint, once its part files are closed (the last
                 of its datasets, ``equity``, done) and before the checkpoint records them with the
                 walk progress they cover, wait for another stream to save the checkpoint, then
                 SIGKILL: an interleaving that thread scheduling can produce on its own, made certain.
``drift:K``      SIGKILL once the K-th part file holding schema-drift columns has been written in
                 its final form from the spool (every page fetched, nothing published yet).

The process kills itself with a real SIGKILL, so the kill lands exactly mid-write instead of
whenever a poller happens to look. Nothing else about the exporter changes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
SIM_CREDENTIALS = {"TRADESYNC_API_KEY": "sim-key", "TRADESYNC_API_SECRET": "sim-secret"}
SNAPSHOT_COLUMNS = ("snapshot_at", "snapshot_date")
KEY_OF = {"accounts": "id", "trades": "id", "balances": "account_id", "equity": "account_id"}


# --------------------------------------------------------------------------- simulator with a request log


@dataclass(frozen=True)
class LoggedRequest:
    attempt: int
    path: str
    params: dict[str, str]

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return self.path, tuple(sorted(self.params.items()))


@dataclass
class RequestLog:
    """Every API request the simulator received, tagged with the attempt the test was running."""

    attempt: int = 0
    entries: list[LoggedRequest] = field(default_factory=list)

    def of(self, attempt: int) -> list[LoggedRequest]:
        return [e for e in self.entries if e.attempt == attempt]

    def count(self, attempt: int) -> int:
        return sum(1 for e in self.entries if e.attempt == attempt)


@contextmanager
def logged_simulator(config: Any) -> Iterator[tuple[str, Any, RequestLog]]:
    """A Tradesync simulator over loopback HTTP whose app records each request before handling it."""
    from aiohttp import web

    from exporter.sandbox.tradesync import TradesyncSimulator

    simulator = TradesyncSimulator(config)
    log = RequestLog()

    @web.middleware
    async def record(request: web.Request, handler: Callable) -> web.StreamResponse:
        if not request.path.startswith("/_sim"):
            log.entries.append(LoggedRequest(log.attempt, request.path, dict(request.query)))
        return await handler(request)

    with serve_with(simulator, record) as base_url:
        yield base_url, simulator, log


@contextmanager
def serve_with(simulator: Any, middleware: Callable) -> Iterator[str]:
    """``simulator`` over loopback HTTP with ``middleware`` seeing every request first (to count,
    hold or fail requests); yields the base URL."""
    from exporter.sandbox._sim_base import run_simulator_in_thread

    def make_app() -> Any:
        app = simulator.make_app()
        app.middlewares.append(middleware)
        return app

    with run_simulator_in_thread(make_app) as base_url:
        yield base_url


def served_records(base_url: str, path: str) -> list[dict[str, Any]]:
    """Every record of a Tradesync collection exactly as served: numbers parsed from their JSON
    text (``Decimal`` keeps the digits, so ``str(value)`` is that text), ``password`` included."""
    import base64
    import urllib.request
    from decimal import Decimal

    token = base64.b64encode(f"{SIM_CREDENTIALS['TRADESYNC_API_KEY']}:{SIM_CREDENTIALS['TRADESYNC_API_SECRET']}"
                             .encode()).decode()
    records: list[dict[str, Any]] = []
    last_id = None
    while True:
        query = "order=asc&limit=1000" + (f"&last_id={last_id}" if last_id is not None else "")
        request = urllib.request.Request(f"{base_url}{path}?{query}", headers={"Authorization": f"Basic {token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            page = json.loads(response.read(), parse_float=Decimal)["data"]
        records += page
        if len(page) < 1000:
            return records
        last_id = page[-1]["id"]


# --------------------------------------------------------------------------- jobs and processes


def write_job(path: Path, name: str, *, rows_per_file: int = 1000, schema_drift: str = "evolve",
              **source: Any) -> Path:
    """A TOML job file with one ``[sources.tradesync]`` table (no sandbox: the URL comes from the env)."""
    lines = [f'name = "{name}"', f"rows_per_file = {rows_per_file}", f'schema_drift = "{schema_drift}"',
             "", "[sources.tradesync]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in source.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def exporter_env(base_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESYNC_")}
    env.update(SIM_CREDENTIALS, TRADESYNC_BASE_URL=base_url, PYTHONUNBUFFERED="1")
    return env


def exporter_command(args: list[str], kill_point: str | None = None) -> list[str]:
    if kill_point is None:
        return [sys.executable, "-m", "exporter", *args]  # the real entry point
    return [sys.executable, str(HERE), kill_point, "--", *args]


def start_exporter(args: list[str], env: dict[str, str], kill_point: str | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        exporter_command(args, kill_point), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def run_exporter(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(exporter_command(args), env=env, capture_output=True, text=True, timeout=timeout)


def wait_for(predicate: Callable[[], Any], *, timeout: float, what: str,
             process: subprocess.Popen[str] | None = None, interval: float = 0.002) -> Any:
    """Poll until ``predicate()`` is truthy; fail (with the process's stderr) after ``timeout`` seconds
    or if ``process`` ends first."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            _, err = process.communicate()
            raise AssertionError(f"exporter ended (rc={process.returncode}) before {what}:\n{err[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def command_error(job: Any, output: Path, env: dict[str, str], code: int, monkeypatch: Any, capsys: Any) -> str:
    """The command in this process (``cli.execute``) with ``env`` set: it must exit ``code`` with
    exactly one ``error:`` line, which is returned."""
    import pytest

    from exporter.cli import execute

    for name, value in env.items():
        monkeypatch.setenv(name, value)  # the command reads the credentials from the environment
    with pytest.raises(SystemExit) as exit_info:
        execute(job, output, "auto", "text")
    assert exit_info.value.code == code
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1, lines
    return lines[0]


# --------------------------------------------------------------------------- output and checkpoints


def published_files(output: Path) -> dict[Path, tuple[int, int]]:
    """Every file of every published snapshot with its size and mtime: equal means untouched."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns)
            for p in output.glob("tradesync/*/snapshot_date=*/*") if p.is_file()}


def partition(output: Path, dataset: str) -> Path:
    found = sorted((output / "tradesync" / dataset).glob("snapshot_date=*"))
    assert len(found) == 1, found
    return found[0]


def manifest(output: Path, dataset: str) -> dict[str, Any]:
    return json.loads((partition(output, dataset) / "_manifest.json").read_text())


def dataset_rows(output: Path, dataset: str) -> list[dict[str, Any]]:
    """A published dataset as rows sorted by their id, without the snapshot time columns."""
    import pyarrow.dataset as ds

    table = ds.dataset(output / "tradesync" / dataset, format="parquet", partitioning="hive").to_table()
    keep = [n for n in table.column_names if n not in SNAPSHOT_COLUMNS]
    return sorted(table.select(keep).to_pylist(), key=lambda row: row[KEY_OF[dataset]])


def checkpoint_path(output: Path, job: str) -> Path:
    return output / "_staging" / job / "checkpoint.json"


def read_checkpoint(output: Path, job: str) -> dict[str, Any] | None:
    path = checkpoint_path(output, job)
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def durable_rows(checkpoint: dict[str, Any] | None) -> int:
    if not checkpoint:
        return 0
    return sum(p["rows"] for d in checkpoint.get("datasets", {}).values() for p in d.get("parts", []))


# --------------------------------------------------------------------------- kill points (script mode)


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _arm_write_kill(k: int) -> None:
    import pyarrow.parquet as pq

    original = pq.ParquetWriter.write_table
    calls = 0
    lock = threading.Lock()

    def write_table(self: Any, table: Any, row_group_size: int | None = None) -> None:
        nonlocal calls
        with lock:
            calls += 1
            last = calls == k
        original(self, table, row_group_size=row_group_size)
        if last:
            _die()  # the rows are in the .inprogress file, its footer never will be

    pq.ParquetWriter.write_table = write_table  # type: ignore[method-assign]


def _arm_checkpoint_kill(k: int) -> None:
    import builtins

    import exporter.fsutil as fsutil

    real_open = builtins.open
    calls = 0

    class TornWriter:
        def __init__(self, handle: Any) -> None:
            self._handle = handle

        def write(self, data: bytes) -> int:
            self._handle.write(data[: len(data) // 2])
            self._handle.flush()
            os.fsync(self._handle.fileno())
            _die()
            return 0  # pragma: no cover

        def __getattr__(self, name: str) -> Any:
            return getattr(self._handle, name)

        def __enter__(self) -> TornWriter:
            return self

        def __exit__(self, *exc: object) -> None:
            self._handle.close()

    def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        handle = real_open(file, mode, *args, **kwargs)
        if "w" in mode and Path(file).name == ".checkpoint.json.tmp":
            calls += 1
            if calls == k:
                return TornWriter(handle)
        return handle

    fsutil.open = open_  # type: ignore[attr-defined]  # module global shadows the builtin for fsutil only


def _arm_race_kill(k: int) -> None:
    from exporter.checkpoint import Checkpoint
    from exporter.sink import DatasetSink

    original_make_durable = DatasetSink.make_durable
    original_save = Checkpoint.save
    saved_by_another_thread = threading.Event()
    waiting: dict[str, int] = {}
    calls = 0

    def save(self: Any) -> None:
        original_save(self)
        if "thread" in waiting and threading.get_ident() != waiting["thread"]:
            saved_by_another_thread.set()

    def make_durable(self: Any) -> dict[str, Any]:
        nonlocal calls
        state = original_make_durable(self)
        if self.key == "tradesync/equity":
            calls += 1
            if calls == k:
                waiting["thread"] = threading.get_ident()
                if saved_by_another_thread.wait(timeout=60):
                    _die()
        return state

    DatasetSink.make_durable = make_durable  # type: ignore[method-assign]
    Checkpoint.save = save  # type: ignore[method-assign]


def _arm_commit_kill(step: str, k: int) -> None:
    """SIGKILL at a step of the commit protocol (:mod:`exporter.commit`), the K-th time it is reached."""
    from exporter.commit import Committer
    from exporter.storage.local import LocalStorage
    from exporter.storage.s3 import S3Storage

    calls = Counter()

    def after(owner: Any, name: str, *, before: bool = False, when: Callable[..., bool] = lambda *a: True) -> None:
        original = getattr(owner, name)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not when(*args):
                return original(*args, **kwargs)
            calls[name] += 1
            if before and calls[name] == k:
                _die()
            result = original(*args, **kwargs)
            if not before and calls[name] == k:
                _die()
            return result

        setattr(owner, name, wrapped)

    if step == "journal":  # the commit record is written, nothing is visible yet
        after(Committer, "_apply", before=True)
    elif step == "swap":  # local: after the K-th partition swap
        after(Committer, "_swap")
    elif step == "complete":  # object storage: after the K-th pending upload is completed
        after(S3Storage, "complete_upload")
    elif step == "manifest":  # object storage: after the K-th manifest of the apply step
        after(S3Storage, "write_atomic", when=lambda self, key, data=b"": key.endswith("/_manifest.json"))
    elif step == "cleanup":  # every partition published, nothing cleaned up
        after(Committer, "_cleanup", before=True)
    elif step == "cleanup-mid":  # the checkpoint is gone, the staged data and the commit record are not
        cleaning = []
        original_cleanup = Committer._cleanup

        def cleanup(self: Any, run_id: str) -> None:
            cleaning.append(run_id)
            original_cleanup(self, run_id)

        Committer._cleanup = cleanup  # type: ignore[method-assign]
        for storage in (LocalStorage, S3Storage):
            after(storage, "delete",
                  when=lambda self, keys: bool(cleaning) and any(key.endswith("checkpoint.json") for key in keys))
    else:
        raise SystemExit(f"unknown commit step {step!r}")
def _arm_drift_kill(k: int) -> None:
    from exporter.sink import DatasetSink

    original = DatasetSink._settle
    calls = 0

    def settle(self: Any, part: Any) -> Any:
        nonlocal calls
        settled = original(self, part)
        calls += 1
        if calls == k:
            _die()
        return settled

    DatasetSink._settle = settle  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    spec, separator, *args = argv
    assert separator == "--", "usage: chaos_helpers.py write:K|checkpoint:K|race:K|drift:K|commit:STEP:K -- <args>"
    kind, _, count = spec.partition(":")
    if kind == "commit":
        step, _, number = count.partition(":")
        _arm_commit_kill(step, int(number))
    else:
        arm = {"write": _arm_write_kill, "checkpoint": _arm_checkpoint_kill, "race": _arm_race_kill,
               "drift": _arm_drift_kill}
        arm[kind](int(count))
    from exporter.cli import main as cli_main

    cli_main(args, prog_name="exporter")


if __name__ == "__main__":
    main(sys.argv[1:])
