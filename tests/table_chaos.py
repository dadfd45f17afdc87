"""The exporter command line with a kill point between table commits (Delta or Iceberg output).

    python tests/table_chaos.py K -- run JOB --output DIR

SIGKILL right after the K-th table commit of the process has landed and before the commit record
says so: the table holds the run's commit, the journal does not list it, and the tables after it
are not committed yet. Nothing else about the exporter changes.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any


def arm(k: int) -> None:
    from exporter.tables import DeltaTables, IcebergTables

    calls = 0
    for backend in (DeltaTables, IcebergTables):
        original = backend.commit

        def commit(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            nonlocal calls
            reached = _original(self, *args, **kwargs)
            calls += 1
            if calls == k:
                sys.stderr.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return reached

        backend.commit = commit  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    count, separator, *args = argv
    assert separator == "--", "usage: table_chaos.py K -- <exporter args>"
    arm(int(count))
    from exporter.cli import main as cli_main

    cli_main(args, prog_name="exporter")


if __name__ == "__main__":
    main(sys.argv[1:])
