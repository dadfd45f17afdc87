"""Progress: a live display on a terminal (rich), periodic log lines otherwise.

Both show the same numbers per stream: percent done (an estimate for id-span walks, marked ``~``),
records, records per second, time left, and any wait a paused source is sitting out. The walks
only keep a :class:`~exporter.estimate.Coverage` current; the pipeline counts written records;
this module samples both, on its own thread, so the pages' hot path pays for two additions.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from .estimate import Coverage, Estimate, Reading

log = logging.getLogger("exporter.progress")


# a terminal that does not tell its size (a pseudo-terminal reporting 0 columns): wide enough for
# every row, rather than rich's 80 columns, which cut stream names and counts off
UNKNOWN_WIDTH = 200
SHOWN_WAIT = 0.5  # shorter pauses (a jittered retry) would only flicker
UNPLANNED = Reading(0.0, None, False, False, "")  # a stream whose walk has not started


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


@dataclass
class Status:
    """One stream at one moment, as both the display and the log lines show it."""

    stream: str
    records: int
    records_per_s: float
    percent: float | None  # None: no total known; rounded down, so 100.0 only once all is covered
    estimated: bool  # a share of the probed id span, not a count
    done_units: float | None
    total_units: float | None
    unit: str
    eta_seconds: float | None
    waiting_seconds: float | None
    wait_reason: str | None
    finished: bool
    planned: bool
    elapsed: float
    earlier: bool = False  # finished by an earlier attempt of this run (resumed)

    @property
    def percent_text(self) -> str:
        """``~41.3%`` for an estimate from the id span, ``38.4%`` for a count."""
        return "" if self.percent is None else f"{'~' if self.estimated else ''}{self.percent:.1f}%"

    @property
    def units_text(self) -> str:
        """``5/13 lists`` where the units are a count a person can check."""
        if not self.unit or self.estimated or self.total_units is None or self.done_units is None:
            return ""
        return f"{self.done_units:,.0f}/{self.total_units:,.0f} {self.unit}"

    @property
    def total_text(self) -> str:
        """Why there is no percent: the walk is still finding out what to walk, or cannot know."""
        return "total not known yet" if not self.planned else "no total known"

    @property
    def status_text(self) -> str:
        if self.finished:
            return "done before resuming" if self.earlier else f"done in {clock_text(self.elapsed)}"
        if self.eta_seconds is not None:
            text = f"{clock_text(self.eta_seconds)} left"
        elif self.percent is not None:
            text = "time left not known yet"
        else:
            text = f"{clock_text(self.elapsed)} elapsed"
        if self.waiting_seconds is not None:  # the time left first: a narrow terminal cuts the end off
            text += f", waiting {math.ceil(self.waiting_seconds)} s: {self.wait_reason}"
        return text

    def line(self) -> str:
        """The log line: the same numbers as the display."""
        head = self.percent_text or self.total_text
        if self.units_text:
            head += f" ({self.units_text})"
        return (f"progress {self.stream}: {head}, {self.records:,} records, {self.records_per_s:,.0f} records/s, "
                f"{self.status_text}")

    def fields(self) -> dict[str, Any]:
        """The same numbers for a JSON log line."""
        return {
            "stream": self.stream,
            "percent": self.percent,
            "estimated": self.estimated,
            "records": self.records,
            "records_per_s": round(self.records_per_s, 1),
            "eta_seconds": None if self.eta_seconds is None else round(self.eta_seconds, 1),
            "done_units": self.done_units,
            "total_units": self.total_units,
            "unit": self.unit or None,
            "waiting_seconds": None if self.waiting_seconds is None else round(self.waiting_seconds, 1),
            "wait_reason": self.wait_reason,
            "finished": self.finished,
        }


def clock_text(seconds: float) -> str:
    """``h:mm:ss``, rounded up (time left is not understated by a second)."""
    whole = max(0, math.ceil(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


BAR = 20
# room kept for what a stream is doing ("0:01:05 left, waiting 12 s: rate limited"): the layout
# does not flip between one and two rows per stream as that text grows and shrinks
STATUS_ROOM = 40


def layout(statuses: list[Status], width: int) -> list[Any]:
    """The display's rows (rich ``Text``): one per stream where the terminal is wide enough, else two
    (name and what it is doing, then the numbers), rather than numbers cut short."""
    from rich.text import Text

    percent_width = max((len(s.percent_text) for s in statuses), default=0)
    units_width = max((len(s.units_text) for s in statuses), default=0)
    cells = []
    for s in statuses:
        share = s.percent_text.rjust(percent_width) + (" " + s.units_text.ljust(units_width) if units_width else "")
        cells.append((s.stream, share, f"{s.records:,} records", f"{s.records_per_s:,.0f} rec/s", s.status_text))
    widths = [max((len(c[i]) for c in cells), default=0) for i in range(4)]
    one_line = widths[0] + BAR + sum(widths[1:]) + 5 + STATUS_ROOM
    rows = []
    for s, (name, share, records, rate, status) in zip(statuses, cells, strict=True):
        if s.percent is None:
            bar = Text(s.total_text.ljust(BAR), style="dim")
        else:
            filled = math.floor(BAR * s.percent / 100)
            bar = Text("━" * filled, style="green" if s.finished else "magenta")
            bar.append("─" * (BAR - filled), style="bright_black")  # thin: readable without colours too
        numbers = Text(" ").join([bar, Text(share.rjust(widths[1])), Text(records.rjust(widths[2])),
                                  Text(rate.rjust(widths[3]))])
        waiting = s.waiting_seconds is not None and not s.finished
        said = Text(status, style="yellow" if waiting else "green" if s.finished else "")
        if one_line <= width:
            rows.append(Text(" ").join([Text(name.ljust(widths[0]), style="bold"), numbers, said]))
        else:
            rows.append(Text(" ").join([Text(name, style="bold"), said]))
            rows.append(Text("  ") + numbers)
    for row in rows:  # a longer row loses its end rather than wrapping into the next stream's
        row.no_wrap, row.overflow = True, "ellipsis"
    return rows


class _View:
    """The statuses of one refresh, laid out at the console's width."""

    def __init__(self, statuses: list[Status]) -> None:
        self.statuses = statuses

    def __rich_console__(self, console: Any, options: Any) -> Any:
        yield from layout(self.statuses, options.max_width)


class _Stream:
    __slots__ = ("coverage", "earlier", "estimate", "finished_at", "logged_finish", "logged_rows", "pages", "rows",
                 "started")

    def __init__(self, now: float, rows: int, finished: bool) -> None:
        self.rows = rows
        self.pages = 0
        self.coverage: Coverage | None = None
        self.estimate = Estimate(now, rows)
        self.started = now
        self.finished_at: float | None = now if finished else None
        self.earlier = finished
        self.logged_finish = False
        self.logged_rows = rows


class Reporter:
    """Counts records per stream and samples each stream's coverage. ``live=True`` draws a rich
    display on stderr; otherwise (``enabled``) one log line per stream every ``log_every`` seconds."""

    def __init__(self, *, enabled: bool = True, live: bool = False, log_every: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = enabled
        self.streams: dict[str, _Stream] = {}
        self._clock = clock
        self._waits: dict[str, tuple[float, str]] = {}  # source -> (until, reason)
        self._log_every = log_every
        self._lock = threading.Lock()
        self._live: Any = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if enabled and live:
            from rich.live import Live

            self._live = Live(console=_stderr_console(), get_renderable=self._render, refresh_per_second=4)
            self._live.start()
        elif enabled:
            self._ticker = threading.Thread(target=self._log_loop, name="progress", daemon=True)
            self._ticker.start()

    # ---- facts, from the event loop

    def add_stream(self, key: str, rows: int = 0, finished: bool = False) -> None:
        """A stream of this run; a resumed run passes the records its checkpoint holds."""
        with self._lock:
            self.streams[key] = _Stream(self._clock(), rows, finished)

    def watch(self, key: str, coverage: Coverage) -> None:
        """The coverage the stream's walk keeps current."""
        stream = self.streams.get(key)
        if stream is not None:
            stream.coverage = coverage

    def advance(self, key: str, rows: int) -> None:
        """A page of ``rows`` records was written (the hot path: two additions)."""
        if not self.enabled:
            return
        stream = self.streams[key]
        stream.pages += 1
        stream.rows += rows

    def finish(self, key: str) -> None:
        stream = self.streams.get(key)
        if stream is not None and stream.finished_at is None:
            stream.finished_at = self._clock()

    def waiting(self, source: str, seconds: float, reason: str) -> None:
        """Every request of ``source`` is held back for ``seconds`` (a Retry-After, a blocked token)."""
        until = self._clock() + seconds
        current = self._waits.get(source)
        if current is None or until >= current[0]:
            self._waits[source] = (until, reason)

    # ---- estimates, on the display's or the log's thread

    def statuses(self) -> list[Status]:
        """Every stream now: samples each coverage (call at a steady pace: the rate is measured
        between calls)."""
        with self._lock:
            now = self._clock()
            return [self._status(key, stream, now) for key, stream in list(self.streams.items())]

    def _status(self, key: str, stream: _Stream, now: float) -> Status:
        estimate = stream.estimate
        coverage = stream.coverage
        finished = stream.finished_at is not None
        estimate.observe(now, coverage.read() if coverage is not None else UNPLANNED, stream.rows)
        reading = estimate.reading
        share = 1.0 if finished else estimate.share
        percent = None if share is None else math.floor(share * 1000) / 10
        if finished:
            end = stream.finished_at or now
            elapsed = end - stream.started
            rate = (stream.rows - estimate.start_rows) / max(elapsed, 1e-3)
        else:
            elapsed = now - stream.started
            rate = estimate.rows_per_second(now)
        wait = self._waits.get(key.split("/", 1)[0])
        waiting = None
        if wait is not None and not finished and wait[0] - now >= SHOWN_WAIT:
            waiting = wait[0] - now
        left = 0.0 if finished else estimate.seconds_left(now)
        if left is not None and waiting is not None:
            # nothing moves until the wait is over; past waits are in the measured rate already
            left = max(left, waiting)
        return Status(
            stream=key,
            records=stream.rows,
            records_per_s=rate,
            percent=percent,
            estimated=bool(reading and reading.estimated) and not finished,
            done_units=reading.done if reading else None,
            total_units=reading.total if reading else None,
            unit=reading.unit if reading else "",
            eta_seconds=left,
            waiting_seconds=waiting,
            wait_reason=wait[1] if waiting is not None and wait else None,
            finished=finished,
            planned=finished or bool(reading and reading.planned),
            elapsed=elapsed,
            earlier=stream.earlier,
        )

    def _render(self) -> Any:
        return _View(self.statuses())

    def _log_loop(self) -> None:
        """Samples every second (the rate and time left need a steady pace), logs every ``log_every``."""
        step = min(1.0, self._log_every)
        last_log = self._clock()
        while not self._stop.wait(step):
            statuses = self.statuses()
            now = self._clock()
            if now - last_log < self._log_every:
                continue
            last_log = now
            self._log(statuses)

    def _moved(self, status: Status) -> bool:
        stream = self.streams[status.stream]
        return status.records != stream.logged_rows or (status.finished and not stream.logged_finish)

    def _log(self, statuses: list[Status]) -> None:
        for status in statuses:
            stream = self.streams[status.stream]
            if status.finished and stream.logged_finish:
                continue  # a finished stream is reported once
            stream.logged_finish, stream.logged_rows = status.finished, status.records
            log.info(status.line(), extra={"fields": status.fields()})

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join()
            self._ticker = None
            # the log ends with where each stream got to, if it got anywhere since its last line (a
            # run that fails at its first request ends with its one error line)
            self._log([s for s in self.statuses() if self._moved(s)])
        if self._live is not None:
            self._live.stop()
            self._live = None
