"""Where a run's output lives: one small interface over a local folder or S3-compatible storage.

Everything a run writes or reads back (part files, rejects, manifests, checkpoint, cursor, lease,
commit record) goes through a :class:`Storage`; nothing above this package touches ``os`` or
``pathlib`` for output. Keys are ``/``-separated paths relative to the output root::

    tradesync/accounts/snapshot_date=2026-12-01/part-00000.parquet
    _staging/nightly/checkpoint.json

Two kinds of write:

* :meth:`Storage.write_atomic` replaces a small object whole: a reader sees the old bytes or the
  new ones (manifests, checkpoints, the commit record).
* :meth:`Storage.open_upload` streams a large file (a Parquet part) that becomes *durable* at
  :meth:`Upload.finish` but *visible* only when the commit protocol publishes it (a local file in
  the staging folder until its folder is swapped in; on S3 a multipart upload left pending until
  the commit completes it, like Hadoop's magic committer).
"""

from __future__ import annotations

import posixpath
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from ..errors import StorageError, UnsafeRemoval

STAGING = "_staging"


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


class Upload(ABC):
    """A streaming write. ``target`` is what a ParquetWriter writes to (a path or a file object)."""

    key: str
    target: Any

    @abstractmethod
    def write(self, data: bytes) -> int: ...

    @abstractmethod
    def finish(self) -> dict[str, Any]:
        """Durable from now on; returns the state a checkpoint keeps: at least ``bytes``."""

    @abstractmethod
    def abort(self) -> None: ...


class Storage(ABC):
    """A local folder or an S3 prefix. ``url`` is for messages (never holds a secret)."""

    url: str
    kind: str  # "local" or "s3"

    @abstractmethod
    def read(self, key: str) -> bytes | None:
        """The object's bytes, or None if there is none."""

    @abstractmethod
    def write_atomic(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (a folder: end it with ``/``), sorted."""

    @abstractmethod
    def delete(self, keys: list[str]) -> None:
        """Delete objects; missing ones are no error."""

    @abstractmethod
    def remove_staging(self, prefix: str) -> None:
        """Remove a tree strictly inside ``_staging/`` (refuses anything else, whatever reaches it)."""

    @abstractmethod
    def open_upload(self, key: str, *, visible: bool = False) -> Upload:
        """A streaming write, published by the commit; ``visible``: readable at ``key`` from
        :meth:`Upload.finish` on (files spooled in the staging area)."""

    @abstractmethod
    def open_read(self, key: str) -> IO[bytes]:
        """A seekable binary file over the object (ranged reads on S3: bounded memory)."""

    @abstractmethod
    def prune_uploads(self, prefix: str, keep: list[dict[str, Any]], tag: str) -> None:
        """Drop what a crash left under ``prefix`` after the last checkpoint: unfinished uploads,
        and finished ones of this run (``tag`` in their name) that ``keep`` does not list."""

    @abstractmethod
    def reach(self) -> None:
        """Fail early, in one line, if the output cannot be used: a folder that cannot be created or
        written, a bucket that is missing or out of reach."""

    def describe(self, key: str) -> str:
        return f"{self.url.rstrip('/')}/{key}"


def join(*parts: str) -> str:
    """Join key parts; refuses empty, ``.`` and ``..`` segments and absolute keys."""
    key = "/".join(p.strip("/") for p in parts if p)
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise UnsafeRemoval(f"refusing the storage key {key!r}: it holds an empty, '.' or '..' segment")
    return key


def parent(key: str) -> str:
    return posixpath.dirname(key)


def basename(key: str) -> str:
    return posixpath.basename(key)


def is_staging_key(key: str) -> bool:
    """Strictly inside ``_staging/`` (never ``_staging`` itself)."""
    segments = key.split("/")
    return len(segments) >= 2 and segments[0] == STAGING and all(s not in ("", ".", "..") for s in segments)


def open_storage(output: str, *, env: Mapping[str, str] | None = None, endpoint_url: str | None = None,
                 region: str | None = None) -> Storage:
    """``s3://BUCKET/PREFIX`` (S3 settings from the standard AWS environment, endpoint and region
    overridable by the job) or a local folder."""
    if output.startswith("s3://"):
        from .s3 import S3Storage

        return S3Storage.from_url(output, env=env, endpoint_url=endpoint_url, region=region)
    if "://" in output:
        raise StorageError(f"output {output!r}: use a local folder or s3://BUCKET/PREFIX")
    from .local import LocalStorage

    return LocalStorage(output)


__all__ = ["STAGING", "ObjectInfo", "Storage", "Upload", "basename", "is_staging_key", "join", "open_storage", "parent"]
