"""An S3 server on loopback (moto's ThreadedMotoServer, the real S3 protocol over HTTP), a fault
proxy in front of it, and helpers to read what a run left in a bucket."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing-key-id", "AWS_SECRET_ACCESS_KEY": "testing-secret-key-123",
               "AWS_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class S3Server:
    endpoint: str
    bucket: str

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        """What a run needs to reach the bucket: the standard AWS variables."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint or self.endpoint}

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def keys(self, prefix: str = "") -> dict[str, int]:
        """Every object under ``prefix`` with its size."""
        client, found, token = self.client(), {}, None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            answer = client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, **extra)
            found.update({o["Key"]: o["Size"] for o in answer.get("Contents", [])})
            if not answer.get("IsTruncated"):
                return found
            token = answer["NextContinuationToken"]

    def pending_uploads(self, prefix: str = "") -> list[str]:
        return [u["Key"] for u in self.client().list_multipart_uploads(Bucket=self.bucket, Prefix=prefix)
                .get("Uploads", [])]

    def mirror(self, prefix: str, into: Path) -> Path:
        """Download everything under ``prefix`` into a folder, to read it like a local output."""
        client = self.client()
        for key in self.keys(prefix):
            target = into / key[len(prefix):].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(self.bucket, key, str(target))
        return into


@contextmanager
def s3_server(bucket: str = "") -> Iterator[S3Server]:
    """A fresh bucket on a new server. moto keeps its buckets in one store per process, shared by
    every server a test session starts: the bucket name is unique, so tests never see each other's."""
    from moto.server import ThreadedMotoServer

    bucket = bucket or f"exports-{uuid.uuid4().hex[:12]}"
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        s3 = S3Server(f"http://127.0.0.1:{port}", bucket)
        s3.client().create_bucket(Bucket=bucket)
        yield s3
    finally:
        server.stop()


@dataclass
class FaultPlan:
    """What the proxy does to requests: a share of them get a 503 SlowDown, a 500, or a dropped
    connection (no answer at all). Seeded, so a test run is repeatable."""

    rate: float = 0.1
    kinds: tuple[str, ...] = ("503", "500", "drop")
    seed: int = 7
    injected: Counter = field(default_factory=Counter)
    forwarded: int = 0


@contextmanager
def fault_proxy(upstream: str, plan: FaultPlan) -> Iterator[str]:
    """An HTTP proxy on loopback in front of the S3 server that injects ``plan``'s faults."""
    import aiohttp
    from aiohttp import web

    rng = random.Random(plan.seed)
    port = free_port()
    ready = threading.Event()
    stop: dict[str, Any] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if rng.random() < plan.rate:
            kind = rng.choice(plan.kinds)
            plan.injected[kind] += 1
            if kind == "drop":
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=500)  # never sent: the connection is gone
            code = "SlowDown" if kind == "503" else "InternalError"
            xml = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>injected</Message></Error>"
            return web.Response(status=int(kind), body=xml.encode(), content_type="application/xml")
        plan.forwarded += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        headers["Host"] = upstream.split("://", 1)[1]
        async with aiohttp.ClientSession(auto_decompress=False) as session, session.request(
            request.method, upstream + request.path_qs, headers=headers, data=body, allow_redirects=False
        ) as answer:
            payload = await answer.read()
            out = {k: v for k, v in answer.headers.items()
                   if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding")}
            return web.Response(status=answer.status, body=payload, headers=out)

    def serve() -> None:
        loop = asyncio.new_event_loop()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        stop["loop"] = loop
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop["loop"].call_soon_threadsafe(stop["loop"].stop)
        thread.join(10)
