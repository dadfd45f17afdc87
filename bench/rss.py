"""Run a command and report its wall time, CPU time and peak RSS as JSON.

    python bench/rss.py RESULT.json -- COMMAND [ARGS...]

Peak RSS is ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` after the command exits: the kernel's
high-water mark of the resident set of the one child we waited for. This wrapper exists because
Linux charges a new program, at ``exec``, with the resident set of the process it was forked from:
``os.wait4`` straight from the benchmark (a big process, with pyarrow loaded) reported 335 MB for
a 45 MB child. Forked from this small interpreter (~10 MB), the figure is the command's own.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    result, sep, *command = sys.argv[1:]
    if sep != "--" or not command:
        raise SystemExit(__doc__)
    started = time.perf_counter()
    code = subprocess.call(command)
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    Path(result).write_text(json.dumps({
        "exit_code": code,
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # KiB on Linux
    }))
    return code


if __name__ == "__main__":
    sys.exit(main())
