"""Headless Chromium driven over the DevTools protocol, with aiohttp's websocket client.

One browser per test module; each :meth:`Browser.visit` opens a page in a fresh tab and returns
what it asked the network for, what it logged as an error, and the value of a probe expression.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)
HANG_GUARD = 90.0  # seconds: only so that a wedged browser fails the test instead of hanging it


def chromium() -> str:
    """The browser CI installs (.ci/run): its absence is a failure, not a skip."""
    found = shutil.which("chromium")
    if found is None:
        raise AssertionError("chromium is not installed: apt-get install -y chromium (.ci/run does this)")
    return found


@dataclass
class Visit:
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    errors: list[str] = field(default_factory=list)  # console errors, uncaught exceptions, error log entries
    value: Any = None  # the probe's result


class Browser:
    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: dict[str, asyncio.Queue[dict[str, Any]]] = {}

    async def __aenter__(self) -> Browser:
        self.process = subprocess.Popen(
            [chromium(), *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        port_file = self.profile / "DevToolsActivePort"
        async with asyncio.timeout(HANG_GUARD):
            while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
                if self.process.poll() is not None:
                    raise AssertionError(f"chromium exited with {self.process.returncode} before it listened")
                await asyncio.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader
        await self.ws.close()
        await self.session.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    async def _read(self) -> None:
        async for message in self.ws:
            data = message.json()
            if "id" in data and data["id"] in self._waiting:
                self._waiting.pop(data["id"]).set_result(data)
            elif "method" in data:
                self._events.setdefault(data.get("sessionId", ""), asyncio.Queue()).put_nowait(data)

    async def call(self, method: str, params: dict[str, Any] | None = None, session: str = "") -> dict[str, Any]:
        message_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[message_id] = future
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        await self.ws.send_json(message)
        async with asyncio.timeout(HANG_GUARD):
            reply = await future
        if "error" in reply:
            raise AssertionError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def visit(self, url: str, probe: str) -> Visit:
        """Load ``url`` in a new tab, let it settle, evaluate ``probe``; record what it did."""
        target = (await self.call("Target.createTarget", {"url": "about:blank"}))["targetId"]
        session = (await self.call("Target.attachToTarget", {"targetId": target, "flatten": True}))["sessionId"]
        events = self._events.setdefault(session, asyncio.Queue())
        for domain in ("Page", "Runtime", "Log", "Network"):
            await self.call(f"{domain}.enable", session=session)
        visit = Visit()
        await self.call("Page.navigate", {"url": url}, session)
        async with asyncio.timeout(HANG_GUARD):
            while True:
                event = await events.get()
                self._record(event, visit)
                if event["method"] == "Page.loadEventFired":
                    break
        # a round trip after the load event: what the page logged while loading has arrived
        result = await self.call("Runtime.evaluate", {"expression": probe, "returnByValue": True}, session)
        visit.value = result.get("result", {}).get("value")
        while not events.empty():
            self._record(events.get_nowait(), visit)
        await self.call("Target.closeTarget", {"targetId": target})
        return visit

    @staticmethod
    def _record(event: dict[str, Any], visit: Visit) -> None:
        method, params = event["method"], event.get("params", {})
        if method == "Network.requestWillBeSent":
            visit.requests.append(params["request"]["url"])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            visit.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            visit.errors.append(params["exceptionDetails"].get("text", "exception"))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            visit.errors.append(f"{params['entry'].get('text', '')} {params['entry'].get('url', '')}".strip())


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 3000) -> None:
    """A PNG of the page's top ``height`` pixels (the README's picture), by the same browser."""
    with contextlib.ExitStack() as stack:
        import tempfile

        profile = stack.enter_context(tempfile.TemporaryDirectory())
        subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", "--hide-scrollbars", f"--window-size={width},{height}",
             f"--screenshot={png}", page.resolve().as_uri()],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=HANG_GUARD,
        )
