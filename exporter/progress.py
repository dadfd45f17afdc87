"""Progress: a live display on a terminal (rich), periodic log lines otherwise."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger("exporter.progress")


@dataclass
class _StreamProgress:
    pages: int = 0
    rows: int = 0
    started: float = field(default_factory=time.monotonic)

    def rate(self) -> float:
        return self.rows / max(1e-6, time.monotonic() - self.started)


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
