"""Helpers shared by the benchmark scripts (run as ``python bench/<script>.py``, so importable)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def exporter_bin() -> str:
    beside = Path(sys.executable).with_name("exporter")
    found = str(beside) if beside.exists() else shutil.which("exporter")
    if not found:
        raise SystemExit("the `exporter` command was not found; run with the project's venv python")
    return found


def stop(proc: subprocess.Popen | None) -> None:
    """Terminate a helper process, killing it if it does not exit within 10 s."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def publish(results_dir: Path, stem: str, report: dict[str, Any], table: str) -> None:
    """Write ``<stem>.json`` and ``<stem>.md`` to ``results_dir`` and print the table."""
    (results_dir / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (results_dir / f"{stem}.md").write_text(table)
    print()
    print(table)
    print(f"written: {results_dir / f'{stem}.json'}, {results_dir / f'{stem}.md'}")


def run_main(main: Callable[[], None]) -> None:
    """A benchmark's entry point: Ctrl-C stops it with one line and exit code 130."""
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
