"""Metrics for schedulers: a Prometheus text file written when a run ends, whatever its outcome.

Meant for node_exporter's textfile collector (``--collector.textfile.directory``; name the file
``*.prom``). The file is replaced atomically (a temporary file in the same folder, fsynced, then
renamed), so the collector reads the previous file or the new one, never half of one.

After a failed run the file keeps, from the previous one, the time of the last success and the
rows of the snapshot that is still the published one; success is 0 and the request counters are
those of the failed run.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .runner import Run, RunResult

PREFIX = "brokerexport_"

HELP = {
    "last_run_success": ("gauge", "1 if the job's last run published its snapshot, 0 if it failed"),
    "last_success_timestamp_seconds": ("gauge", "Unix time the job last published a snapshot (0: never)"),
    "run_duration_seconds": ("gauge", "Wall time of the job's last run, failed or not"),
    "rows": ("gauge", "Rows of each dataset in the snapshot the job last published"),
    "requests_total": ("gauge", "HTTP requests of the last run, per source (each run starts from 0)"),
    "retries_total": ("gauge", "Retries (attempts after a failed one) in the last run, per source"),
    "rate_limited_total": ("gauge", "Answers 429 (rate limited) in the last run, per source"),
}


@dataclass
class RunOutcome:
    """What the metrics need to know about one run: filled in while it goes."""

    job: str
    started: float = field(default_factory=time.time)
    result: RunResult | None = None
    run: Run | None = None  # the run in progress: its request counters, if it fails

    def watch(self, run: Run) -> None:
        self.run = run

    def requests(self) -> dict[str, dict[str, Any]]:
        if self.result is not None:
            return self.result.requests
        return self.run.request_stats() if self.run is not None else {}


def _labels(**labels: str) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def render(outcome: RunOutcome, finished: float, previous: str = "") -> str:
    job = outcome.job
    samples: dict[str, list[str]] = {name: [] for name in HELP}
    job_label = _labels(job=job)
    success = outcome.result is not None
    samples["last_run_success"].append(f"{job_label} {1 if success else 0}")
    last_success = finished if success else _previous_value(previous, "last_success_timestamp_seconds", job_label)
    samples["last_success_timestamp_seconds"].append(f"{job_label} {_number(last_success or 0)}")
    samples["run_duration_seconds"].append(f"{job_label} {finished - outcome.started:.3f}")
    if outcome.result is not None:
        for d in outcome.result.datasets:
            samples["rows"].append(f"{_labels(job=job, source=d.source, dataset=d.dataset)} {d.rows}")
    else:  # the published snapshot did not change: its rows stay
        samples["rows"].extend(_previous_samples(previous, "rows", job))
    for source, stats in sorted(outcome.requests().items()):
        labels = _labels(job=job, source=source)
        samples["requests_total"].append(f"{labels} {int(stats.get('requests', 0))}")
        samples["retries_total"].append(f"{labels} {int(stats.get('retries', 0))}")
        samples["rate_limited_total"].append(f"{labels} {int(stats.get('http_429', 0))}")
    lines = []
    for name, (kind, text) in HELP.items():
        if not samples[name]:
            continue
        lines += [f"# HELP {PREFIX}{name} {text}", f"# TYPE {PREFIX}{name} {kind}"]
        lines += [f"{PREFIX}{name}{sample}" for sample in samples[name]]
    return "\n".join(lines) + "\n"


_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?P<labels>\{.*\}) (?P<value>\S+)$")


def _previous_samples(previous: str, name: str, job: str) -> list[str]:
    """This file's own earlier samples of ``name`` for ``job`` (label set and value, as written)."""
    out = []
    for line in previous.splitlines():
        match = _SAMPLE.match(line)
        if match and match["name"] == PREFIX + name and match["labels"].startswith(_labels(job=job)[:-1] + ","):
            out.append(f"{match['labels']} {match['value']}")
    return out


def _previous_value(previous: str, name: str, labels: str) -> float | None:
    for line in previous.splitlines():
        match = _SAMPLE.match(line)
        if match and match["name"] == PREFIX + name and match["labels"] == labels:
            try:
                return float(match["value"])
            except ValueError:
                return None
    return None


def write_metrics(path: Path, outcome: RunOutcome, finished: float | None = None) -> None:
    """Replace ``path`` atomically with the metrics of ``outcome``."""
    path = Path(path)
    try:
        previous = path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        previous = ""
    text = render(outcome, time.time() if finished is None else finished, previous)
    write_atomic(path, text.encode())


def write_atomic(path: Path, data: bytes) -> None:
    """Temporary file beside ``path`` (the collector reads ``*.prom`` only), fsync, rename; on any
    failure the temporary file is removed and ``path`` is untouched."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # the collector may run as another user
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
