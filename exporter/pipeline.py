"""One stream of a run: its walk (the producer) and conversion plus writing (the consumer).

Producer and consumer are joined by a bounded queue: memory holds at most ``queue_pages`` pages,
``convert_ahead`` converting pages and one row group per dataset. Pages convert on the run's
worker threads (Arrow releases the GIL) and are written one at a time, in the order they arrived.
After every ``checkpoint_rows`` rows the stream's part files are made durable and the checkpoint
records them together with the walk progress they cover.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .checkpoint import merge_progress
from .errors import IncompleteRun
from .estimate import Coverage
from .http import HttpClient
from .progress import Reporter
from .schema import Converted, PageConverter
from .sink import DatasetSink
from .sources import Stream
from .walk import Page, combine, failed_targets


@dataclass
class PipelineSettings:
    queue_pages: int = 8
    convert_ahead: int = 3  # pages converting while the oldest one is written
    batch_rows: int = 1000  # small pages waiting in the queue are combined up to this many rows
    checkpoint_rows: int = 1_000_000


@dataclass
class StreamPipeline:
    """Everything one stream needs from its run; ``save`` writes the checkpoint (event loop only)."""

    key: str
    stream: Stream
    state: dict[str, Any]  # the stream's checkpoint entry: {"walk": {...}, "done": bool}
    sinks: list[DatasetSink]
    converter: PageConverter
    settings: PipelineSettings
    convert_pool: ThreadPoolExecutor
    writer_pool: ThreadPoolExecutor
    reporter: Reporter
    save: Callable[[], None]
    on_producer: Callable[[asyncio.Task], None]

    async def run(self, client: HttpClient) -> None:
        stream, sinks, walk_state = self.stream, self.sinks, self.state["walk"]
        queue: asyncio.Queue[Page] = asyncio.Queue(maxsize=self.settings.queue_pages)
        coverage = Coverage()  # the walk says how far it has got, the reporter shows it
        self.reporter.watch(self.key, coverage)
        producer = asyncio.create_task(stream.walk.run(client, queue.put, walk_state, coverage))
        self.on_producer(producer)
        loop = asyncio.get_running_loop()
        pending: list[dict[str, Any]] = []
        since_checkpoint = 0
        converter = self.converter

        def convert(page: Page) -> Converted:
            if page.objects is not None:
                converted = converter.from_json_objects(page.objects)
                if page.ids is not None:
                    converter.check_ids(converted.table, page.ids)
                return converted
            return converter.from_records(page.records or [])

        def write(page: Page, converted: Converted) -> None:
            if stream.incremental:  # what the walk saw (every row, before any filter) moves the cursor
                page.progress = stream.observe(page.progress, converted.table)
            for sink, project in zip(sinks, stream.outputs.values(), strict=True):
                sink.add(project(converted.table, page), converted, page)

        async def durable(step: Callable[[DatasetSink], dict[str, Any]]) -> None:
            """Part files finished (in a writer thread), then their list and the walk progress they
            cover go into the checkpoint together, saved from the event loop: no other stream can
            save one without the other in between."""
            nonlocal since_checkpoint
            states = await loop.run_in_executor(self.writer_pool, lambda: [step(sink) for sink in sinks])
            for sink, state in zip(sinks, states, strict=True):
                sink.state.update(state)
            for progress in pending:
                merge_progress(walk_state, progress)
            pending.clear()
            since_checkpoint = 0
            self.save()

        converting: collections.deque[tuple[Page, asyncio.Future[Converted]]] = collections.deque()

        first_write = True

        async def write_oldest() -> None:
            nonlocal since_checkpoint, first_write
            page, future = converting.popleft()
            converted = await future
            if first_write:  # from now on there is something to resume (and uploads to find again)
                self.save()
                first_write = False
            await loop.run_in_executor(self.writer_pool, write, page, converted)
            pending.append(page.progress)
            since_checkpoint += page.size
            self.reporter.advance(self.key, page.size)
            if since_checkpoint >= self.settings.checkpoint_rows:
                await durable(DatasetSink.make_durable)

        try:
            while True:
                if producer.done() and queue.empty():
                    break
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, producer}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    continue
                batch = [getter.result()]
                # take what else is waiting, up to a page's worth of rows: small fan-out pages
                # would otherwise cost a conversion and a write each
                while not queue.empty() and sum(p.size for p in batch) < self.settings.batch_rows:
                    batch.append(queue.get_nowait())
                for group in same_kind_runs(batch):
                    page = combine(group)
                    converting.append((page, loop.run_in_executor(self.convert_pool, convert, page)))
                while len(converting) >= self.settings.convert_ahead:
                    await write_oldest()
            while converting:
                await write_oldest()
            if not first_write:  # without a page written there is nothing to resume: no checkpoint
                await durable(DatasetSink.make_durable)
            if producer.cancelled():
                return
            producer.result()  # re-raise a walk failure
            failed = failed_targets(walk_state)
            if failed:
                sample = "; ".join(f"{k}: {v}" for k, v in list(failed.items())[:3])
                # a streamed fan-out counts its targets instead of keeping them
                planned = walk_state.get("accounts", len(walk_state.get("targets", [])))
                raise IncompleteRun(
                    f"{self.key}: {len(failed)} of {planned} requests "
                    f"groups still failed after retries (e.g. {sample}). Nothing was published; rerun to "
                    "fetch only those (finished ones are checkpointed)"
                )
            await durable(DatasetSink.finish)
            self.state["done"] = True
            self.save()
            self.reporter.finish(self.key)
        except BaseException:
            producer.cancel()
            with contextlib.suppress(BaseException):
                await producer
            for _, future in converting:
                future.cancel()
            raise


def same_kind_runs(pages: list[Page]) -> list[list[Page]]:
    """Consecutive pages that carry the same kind of payload (raw objects or records)."""
    runs: list[list[Page]] = []
    for page in pages:
        if runs and (runs[-1][0].objects is None) == (page.objects is None):
            runs[-1].append(page)
        else:
            runs.append([page])
    return runs
