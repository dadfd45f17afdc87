"""Progress: a live display on a terminal (rich), periodic log lines otherwise."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any

log = logging.getLogger("exporter.progress")


@dataclass
class _StreamProgress:
    pages: int = 0
    rows: int = 0
    started: float = field(default_factory=time.monotonic)

    def rate(self) -> float:
        return self.rows / max(1e-6, time.monotonic() - self.started)


# a terminal that does not tell its size (a pseudo-terminal reporting 0 columns): wide enough for
# every row, rather than rich's 80 columns, which cut stream names and counts off
UNKNOWN_WIDTH = 200


def display_width(stream: IO[str]) -> int:
    """The width of the terminal ``stream`` is on, measured on that stream itself (rich measures
    stdin first, which may be another terminal or one reporting 0 columns); then ``COLUMNS``."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    env = os.environ.get("COLUMNS", "")
    return int(env) if env.isdigit() and int(env) > 0 else UNKNOWN_WIDTH


def _stderr_console() -> Any:
    """A rich console on stderr (the display is for the terminal there; stdout keeps the summary)
    whose width is measured at every refresh, so a resized terminal is followed."""
    from rich.console import Console, ConsoleDimensions

    class StderrConsole(Console):
        def _size(self) -> ConsoleDimensions:
            return ConsoleDimensions(display_width(self.file), Console.size.fget(self).height)  # type: ignore[attr-defined]

        size = property(_size, Console.size.fset)  # type: ignore[assignment]

    return StderrConsole(file=sys.stderr)


class Reporter:
    """Counts pages and records per stream. ``live=True`` draws a rich progress display."""

    def __init__(self, *, enabled: bool = True, live: bool = False, log_every: float = 10.0) -> None:
        self.enabled = enabled
        self.streams: dict[str, _StreamProgress] = {}
        self._live = None
        self._tasks: dict[str, int] = {}
        self._log_every = log_every
        self._last_log = time.monotonic()
        self._lock = threading.Lock()
        if enabled and live:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._live = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                TextColumn("{task.completed:>12,.0f} records"),
                TextColumn("{task.fields[pages]:>7,} pages"),
                TextColumn("{task.fields[rate]:>10,.0f} rec/s"),
                TimeElapsedColumn(),
                console=_stderr_console(),
                transient=False,
            )
            self._live.start()

    def add_stream(self, key: str) -> None:
        with self._lock:
            self.streams[key] = _StreamProgress()
            if self._live is not None:
                self._tasks[key] = self._live.add_task(key, total=None, pages=0, rate=0.0)

    def advance(self, key: str, rows: int) -> None:
        if not self.enabled:
            return
        with self._lock:
            stream = self.streams[key]
            stream.pages += 1
            stream.rows += rows
            if self._live is not None:
                self._live.update(self._tasks[key], completed=stream.rows, pages=stream.pages, rate=stream.rate())
                return
            now = time.monotonic()
            if now - self._last_log >= self._log_every:
                self._last_log = now
                for name, s in self.streams.items():
                    log.info("progress %s: %d records, %d pages, %.0f records/s", name, s.rows, s.pages, s.rate())

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
