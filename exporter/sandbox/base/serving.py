"""Running a simulator's aiohttp app: in the foreground (the CLI, benchmarks) or on its own event
loop in a daemon thread (tests)."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from aiohttp import web

AppFactory = Callable[[], web.Application] | web.Application


def _build_app(app_factory: AppFactory) -> web.Application:
    return app_factory if isinstance(app_factory, web.Application) else app_factory()


async def _start(app: web.Application, host: str, port: int,
                 ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    bound_port = int(runner.addresses[0][1])
    return runner, bound_port


async def serve(app: web.Application, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None) -> None:
    """Serve ``app`` until this coroutine is cancelled (the CLI's foreground mode)."""
    runner, _ = await _start(app, host, port, ssl_context)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


@contextmanager
def run_simulator_in_thread(
    app_factory: AppFactory, host: str = "127.0.0.1", port: int = 0, *, ssl_context: ssl.SSLContext | None = None
) -> Iterator[str]:
    """Run an aiohttp app on its own event loop in a daemon thread.

    Yields the base URL, e.g. ``http://127.0.0.1:54321`` (``https://`` with ``ssl_context``); the
    server is shut down and the thread joined when the block exits. A bind or factory error is
    raised in the caller's thread.

    >>> with run_simulator_in_thread(sim.make_app) as base_url:  # doctest: +SKIP
    ...     urllib.request.urlopen(base_url + "/_sim/state")
    """
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, object] = {}

    async def main() -> None:
        stop = asyncio.Event()
        box["stop"] = stop
        try:
            runner, bound = await _start(_build_app(app_factory), host, port, ssl_context)
        except BaseException as exc:  # surface bind/factory errors in the caller's thread
            box["error"] = exc
            ready.set()
            return
        box["port"] = bound
        ready.set()
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    def thread_main() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    thread = threading.Thread(target=thread_main, name="sim-server", daemon=True)
    thread.start()
    ready.wait()
    if "error" in box:
        thread.join()
        raise box["error"]  # type: ignore[misc]
    scheme = "https" if ssl_context is not None else "http"
    try:
        yield f"{scheme}://{host}:{box['port']}"
    finally:
        stop: asyncio.Event = box["stop"]  # type: ignore[assignment]
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
