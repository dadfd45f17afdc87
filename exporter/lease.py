"""The run lease: exactly one run per job and output at a time.

* Local output: an exclusive OS lock (``flock``) on ``_staging/<job>.lease``, held by the process,
  so a kill -9 releases it at once.
* S3: a lease object at the same key, created with ``If-None-Match: *``, renewed with ``If-Match``
  every ``ttl / 4`` seconds while the run lives, and taken over (``If-Match`` on the stale ETag)
  only once the server's clock says it is older than its ``ttl`` (default 60 s): a killed run
  locks the next cron run out for at most a minute. Ages are measured on the server's clock
  (``Last-Modified`` against the response's ``Date``), so the hosts' clocks need not agree.

A run that finds the lease held exits with code 4, naming the holder, and touches nothing.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

from .errors import LeaseHeld, LeaseLost, StorageError
from .storage import STAGING, Storage

log = logging.getLogger("exporter.lease")

DEFAULT_TTL = 60.0


def lease_key(job: str) -> str:
    return f"{STAGING}/{job}.lease"


def describe_holder(raw: bytes | None) -> str:
    try:
        holder = json.loads(raw or b"{}")
    except ValueError:
        holder = {}
    if not holder:
        return "holder unknown"
    run = f", run {holder['run_id']}" if holder.get("run_id") else ""
    return f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}{run}, since {holder.get('since', '?')}"


class RunLease:
    def __init__(self, storage: Storage, job: str, *, ttl: float = DEFAULT_TTL) -> None:
        self.storage = storage
        self.job = job
        self.key = lease_key(job)
        self.ttl = ttl
        self.holder: dict[str, Any] = {
            "job": job,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
            "ttl_seconds": ttl,
        }
        self._lock: Any = None
        self._etag: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost: str | None = None
        self._last_renewed = 0.0
        self._mutex = threading.Lock()

    def _body(self) -> bytes:
        return json.dumps(self.holder).encode()

    def _refuse(self, raw: bytes | None) -> LeaseHeld:
        return LeaseHeld(
            f"job {self.job!r} is already running against {self.storage.url} ({describe_holder(raw)}); "
            "this run touched nothing"
        )

    def acquire(self) -> None:
        if self.storage.kind == "local":
            self._lock = self.storage.lock(self.key)  # type: ignore[attr-defined]
            if not self._lock.acquire(self._body()):
                raise self._refuse(self._lock.holder())
            return
        self._acquire_object()
        self._last_renewed = time.monotonic()
        self._thread = threading.Thread(target=self._renew_loop, name="lease", daemon=True)
        self._thread.start()

    def _acquire_object(self) -> None:
        storage: Any = self.storage
        for _ in range(3):
            etag = storage.put_if(self.key, self._body(), etag=None)
            if etag is not None:
                self._etag = etag
                return
            head = storage.head(self.key)
            if head is None:
                continue  # released meanwhile: try again
            raw = storage.read(self.key)
            try:
                ttl = float(json.loads(raw or b"{}").get("ttl_seconds", DEFAULT_TTL))
            except (ValueError, TypeError, AttributeError):
                ttl = DEFAULT_TTL
            now = head["server_now"] or datetime.now(UTC)
            age = (now - head["last_modified"]).total_seconds()
            if age <= ttl:
                raise self._refuse(raw)
            etag = storage.put_if(self.key, self._body(), etag=head["etag"])
            if etag is not None:
                log.warning("took over the lease of job %s: %s, not renewed for %.0f s (its ttl: %.0f s)",
                            self.job, describe_holder(raw), age, ttl)
                self._etag = etag
                return
        raise self._refuse(storage.read(self.key))

    def set_run(self, run_id: str) -> None:
        """Name the run in the lease (a refused run prints it)."""
        self.holder["run_id"] = run_id
        if self._lock is not None:
            self._lock.rewrite(self._body())
        else:
            self.renew()

    def renew(self) -> None:
        """Renew now (the commit calls this right before its first visible change)."""
        if self._lock is not None or self._etag is None:
            return
        with self._mutex:
            if self._lost:
                raise LeaseLost(self._lost)
            etag = self.storage.put_if(self.key, self._body(), etag=self._etag)  # type: ignore[attr-defined]
            if etag is None:
                self._lost = (f"the lease of job {self.job!r} on {self.storage.url} was taken over by another run; "
                              "nothing was published, rerun to resume")
                raise LeaseLost(self._lost)
            self._etag = etag
            self._last_renewed = time.monotonic()

    def check(self) -> None:
        if self._lost:
            raise LeaseLost(self._lost)
        if self._etag is not None and time.monotonic() - self._last_renewed > self.ttl:
            self._lost = (f"the lease of job {self.job!r} could not be renewed for {self.ttl:.0f} s; "
                          "nothing was published, rerun to resume")
            raise LeaseLost(self._lost)

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                self.renew()
            except LeaseLost:
                return
            except StorageError as exc:
                log.warning("renewing the lease failed (%s); trying again", exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
            return
        if self._etag is not None and not self._lost:
            storage: Any = self.storage
            try:
                head = storage.head(self.key)
                if head is not None and head["etag"] == self._etag:
                    storage.delete([self.key])
            except StorageError as exc:
                log.warning("could not release the lease (%s); it expires in %.0f s", exc, self.ttl)
            self._etag = None
