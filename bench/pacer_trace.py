"""``exporter`` (the CLI, unchanged) with its pacers' decisions written to a trace file.

    python bench/pacer_trace.py TRACE.jsonl run JOB.toml --output DIR ...

Same process, same code path as the ``exporter`` command: ``exporter.process.prepare`` then
``exporter.cli.main`` run with the given arguments. Before that, three methods of
:class:`exporter.ratelimit.Pacer` are wrapped (the class is not modified on disk) so that each
of these lands in ``TRACE.jsonl`` as one JSON line, with
``t = time.monotonic()`` (the same clock as ``bench/rate_sim.py``'s request log):

- ``{"t", "ev": "throttled", "told": bool, "before": rate, "after": rate}`` for every 429 seen;
- ``{"t", "ev": "pause", "s": seconds}`` for every pause (Retry-After, backoff of a plain 429);
- ``{"t", "ev": "rate", "rate": rate}`` at most every 0.25 s while successes come in.

``rate`` is the pacer's current requests/s (null while unlimited). Lines are buffered in memory
and written when the process exits, so tracing costs a few microseconds per call.
"""

from __future__ import annotations

import atexit
import json
import sys
import time
from typing import Any

from exporter.ratelimit import Pacer


def install(path: str) -> None:
    lines: list[dict[str, Any]] = []
    last_sample = [0.0]
    on_throttled, pause, on_success = Pacer.on_throttled, Pacer.pause, Pacer.on_success

    def traced_throttled(self: Pacer, *, told_to_wait: bool = False) -> None:
        before = self.rate
        on_throttled(self, told_to_wait=told_to_wait)
        lines.append({"t": time.monotonic(), "ev": "throttled", "told": told_to_wait,
                      "before": before, "after": self.rate})

    def traced_pause(self: Pacer, seconds: float) -> None:
        pause(self, seconds)
        lines.append({"t": time.monotonic(), "ev": "pause", "s": seconds})

    def traced_success(self: Pacer) -> None:
        on_success(self)
        now = time.monotonic()
        if now - last_sample[0] >= 0.25:
            last_sample[0] = now
            lines.append({"t": now, "ev": "rate", "rate": self.rate})

    def write() -> None:
        with open(path, "w") as out:
            out.writelines(json.dumps(line) + "\n" for line in lines)

    Pacer.on_throttled = traced_throttled  # type: ignore[method-assign]
    Pacer.pause = traced_pause  # type: ignore[method-assign]
    Pacer.on_success = traced_success  # type: ignore[method-assign]
    atexit.register(write)


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    from exporter.process import prepare

    prepare()  # as the exporter command does, before pyarrow loads
    install(sys.argv[1])
    from exporter.cli import main as cli_main

    sys.argv = ["exporter", *sys.argv[2:]]
    cli_main()


if __name__ == "__main__":
    main()
