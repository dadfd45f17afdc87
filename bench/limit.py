"""The limit: a sequential keyset walk over ``/accounts`` that only fetches and parses each page.

    python bench/limit.py http://127.0.0.1:8801      (prints {"rows", "requests", "seconds"} as JSON)

What the network and JSON decoding alone cost; no exporter can be faster with one walk.
Credentials: ``TRADESYNC_API_KEY`` / ``TRADESYNC_API_SECRET`` (default: the simulator's).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import aiohttp
import orjson

PAGE_SIZE = 1000


async def walk(base_url: str) -> dict[str, float]:
    started = time.perf_counter()
    auth = aiohttp.BasicAuth(os.environ.get("TRADESYNC_API_KEY", "sim-key"),
                             os.environ.get("TRADESYNC_API_SECRET", "sim-secret"))
    rows = requests = 0
    last_id: int | None = None
    async with aiohttp.ClientSession(base_url, auth=auth) as session:
        while True:
            params = {"order": "asc", "limit": str(PAGE_SIZE)}
            if last_id is not None:
                params["last_id"] = str(last_id)
            async with session.get("/accounts", params=params) as response:
                response.raise_for_status()
                page = orjson.loads(await response.read())
            requests += 1
            rows += len(page["data"])
            if len(page["data"]) < PAGE_SIZE:
                break
            last_id = page["meta"]["last_id"]
    return {"rows": rows, "requests": requests, "seconds": time.perf_counter() - started}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(walk(sys.argv[1]))))
