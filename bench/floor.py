"""The floor: the simplest correct hand-written exporter of ``/accounts`` to one Parquet file.

    python bench/floor.py http://127.0.0.1:8801 OUT.parquet   (prints {"rows", "requests", "seconds"})

The limit's sequential walk, plus: exact decimals (``parse_float=Decimal``), UTC timestamps, the
dataset's explicit Arrow schema, the plaintext ``password`` dropped, one streaming ParquetWriter
(zstd, like the exporter). No retries, no checks, no checkpoint.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from datetime import datetime
from decimal import Decimal

import aiohttp
import pyarrow as pa
import pyarrow.parquet as pq

from exporter.sources.tradesync import ACCOUNT

PAGE_SIZE = 1000
SCHEMA = ACCOUNT.arrow_schema()
TIMESTAMPS = [f.name for f in SCHEMA if pa.types.is_timestamp(f.type)]


def to_batch(rows: list[dict]) -> pa.RecordBatch:
    for row in rows:
        row.pop("password", None)
        for name in TIMESTAMPS:
            if row.get(name):
                row[name] = datetime.fromisoformat(row[name])
    return pa.RecordBatch.from_pylist(rows, schema=SCHEMA)


async def export(base_url: str, path: str) -> dict[str, float]:
    started = time.perf_counter()
    auth = aiohttp.BasicAuth(os.environ.get("TRADESYNC_API_KEY", "sim-key"),
                             os.environ.get("TRADESYNC_API_SECRET", "sim-secret"))
    rows = requests = 0
    last_id: int | None = None
    async with aiohttp.ClientSession(base_url, auth=auth) as session:
        with pq.ParquetWriter(path, SCHEMA, compression="zstd") as writer:
            while True:
                params = {"order": "asc", "limit": str(PAGE_SIZE)}
                if last_id is not None:
                    params["last_id"] = str(last_id)
                async with session.get("/accounts", params=params) as response:
                    response.raise_for_status()
                    page = json.loads(await response.read(), parse_float=Decimal)
                requests += 1
                data = page["data"]
                if data:
                    writer.write_batch(to_batch(data))
                rows += len(data)
                if len(data) < PAGE_SIZE:
                    break
                last_id = page["meta"]["last_id"]
    return {"rows": rows, "requests": requests, "seconds": time.perf_counter() - started}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(export(sys.argv[1], sys.argv[2]))))
