"""``exporter`` (the CLI, unchanged) with its pacers' decisions written to a trace file.

    python bench/pacer_trace.py TRACE.jsonl run JOB.toml --output DIR ...

Same process, same code path as the ``exporter`` command: ``exporter.process.prepare`` then
``exporter.cli.main`` run with the given arguments. Before that, three methods of
:class:`exporter.ratelimit.Pacer` and :class:`exporter.probing.ProbingPacer` are wrapped (the
classes are not modified on disk) so that each of these lands in ``TRACE.jsonl`` as one JSON
line, with ``t = time.monotonic()`` (the same clock as ``bench/rate_sim.py``'s request log) and
``pacer`` telling the pacers (one per collection for TraderEvolution) apart:

- ``{"t", "ev": "throttled", "told": bool, "before": rate, "after": rate, "blocked": bool}`` for
  every 429 seen (``blocked``: a probing pacer's probe was refused);
- ``{"t", "ev": "pause", "s": seconds}`` for every pause (Retry-After, backoff of a plain 429,
  a probing pacer's wait before its probe);
- ``{"t", "ev": "rate", "rate": rate}`` at most every 0.25 s per pacer while successes come in.

``rate`` is the pacer's current requests/s (null while unlimited). Lines are buffered in memory
and written when the process exits, so tracing costs a few microseconds per call.
"""

from __future__ import annotations

import atexit
import json
import sys
import time
from typing import Any

from exporter.probing import ProbingPacer
from exporter.ratelimit import Pacer


def install(path: str) -> None:
    lines: list[dict[str, Any]] = []
    last_sample: dict[int, float] = {}

    def wrap(cls: type) -> None:
        on_throttled, pause, on_success = cls.on_throttled, cls.pause, cls.on_success

        def traced_throttled(self: Any, *args: Any, **kwargs: Any) -> Any:
            before = self.rate
            verdict = on_throttled(self, *args, **kwargs)
            lines.append({"t": time.monotonic(), "ev": "throttled", "told": kwargs.get("told_to_wait", False),
                          "before": before, "after": self.rate, "pacer": id(self), "blocked": bool(verdict)})
            return verdict

        def traced_pause(self: Any, seconds: float) -> None:
            pause(self, seconds)
            lines.append({"t": time.monotonic(), "ev": "pause", "s": seconds, "pacer": id(self)})

        def traced_success(self: Any, *args: Any, **kwargs: Any) -> None:
            on_success(self, *args, **kwargs)
            now = time.monotonic()
            if now - last_sample.get(id(self), 0.0) >= 0.25:
                last_sample[id(self)] = now
                lines.append({"t": now, "ev": "rate", "rate": self.rate, "pacer": id(self)})

        cls.on_throttled = traced_throttled
        cls.pause = traced_pause
        cls.on_success = traced_success

    def write() -> None:
        with open(path, "w") as out:
            out.writelines(json.dumps(line) + "\n" for line in lines)

    wrap(Pacer)
    wrap(ProbingPacer)
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
