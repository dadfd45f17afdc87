"""The exporter's own ``/accounts`` walk with every page dropped: the walk without conversion or writing.

    python bench/walk.py JOB.toml      (prints {"rows", "requests", "seconds"} as JSON)

Same ``HttpClient``, ``KeysetCollection`` and page decoder as ``exporter run``, same job file; the
pages go nowhere. Run with ``parallel_walks = 1`` and ``= 8``, it measures what the parallel id-range
walks themselves gain over one sequential walk, apart from the CPU the conversion needs.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from exporter.process import prepare


async def walk(job_file: Path) -> dict[str, float]:
    from exporter.jobs import load_job
    from exporter.runner import source_client
    from exporter.sources import registry
    from exporter.walk import Page

    started = time.perf_counter()
    (spec,) = load_job(job_file, registry()).sources
    source = registry()[spec.kind](spec)
    client = source_client(source, source.connection(os.environ))
    rows = 0

    async def drop(page: Page) -> None:
        nonlocal rows
        rows += page.size

    async with client:
        (stream,) = [s for s in source.streams() if s.name == "accounts"]
        await stream.walk.run(client, drop, {})
        requests = client.stats.requests
    return {"rows": rows, "requests": requests, "seconds": time.perf_counter() - started}


if __name__ == "__main__":
    prepare()
    print(json.dumps(asyncio.run(walk(Path(sys.argv[1])))))
