"""A local folder as storage: fsynced files, atomic renames, directory swaps, an OS lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import IO, Any

from ..errors import OutputFolderError, UnsafeRemoval
from ..fsutil import exchange_dirs, fsync_dir, remove_staging_tree, write_bytes_atomic
from . import STAGING, ObjectInfo, Storage, Upload, is_staging_key

IN_PROGRESS_SUFFIX = ".inprogress"


class LocalUpload(Upload):
    """Written as ``name.inprogress`` and renamed to ``name`` once closed and fsynced."""

    def __init__(self, path: Path, key: str) -> None:
        self.key = key
        self.final = path
        self.path = path.with_name(path.name + IN_PROGRESS_SUFFIX)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.target = str(self.path)  # ParquetWriter writes natively to a path
        self._handle: IO[bytes] | None = None

    def write(self, data: bytes) -> int:
        if self._handle is None:
            self._handle = open(self.path, "ab")  # noqa: SIM115 - kept open across writes
        return self._handle.write(data)

    def finish(self) -> dict[str, Any]:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if not self.path.exists():
            self.path.touch()
        with open(self.path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(self.path, self.final)
        fsync_dir(self.final.parent)
        return {"bytes": self.final.stat().st_size}

    def abort(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self.path.unlink(missing_ok=True)


class LocalStorage(Storage):
    kind = "local"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def path(self, key: str) -> Path:
        return self.root / key if key else self.root

    def reach(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputFolderError(f"cannot create the output folder {self.root}: {exc.strerror or exc}") from None
        if not os.access(self.root, os.W_OK):
            raise OutputFolderError(f"cannot write to the output folder {self.root}: permission denied")

    def read(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def write_atomic(self, key: str, data: bytes) -> None:
        write_bytes_atomic(self.path(key), data)

    def list(self, prefix: str) -> list[ObjectInfo]:
        base = self.path(prefix.rsplit("/", 1)[0] if "/" in prefix else "")
        if not base.is_dir():
            return []
        found: list[ObjectInfo] = []
        for directory, _, files in os.walk(base):
            for name in files:
                full = Path(directory) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    try:
                        found.append(ObjectInfo(key, full.stat().st_size))
                    except FileNotFoundError:
                        continue
        return sorted(found, key=lambda o: o.key)

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self.path(key).unlink(missing_ok=True)

    def remove_staging(self, prefix: str) -> None:
        if not is_staging_key(prefix.rstrip("/")):
            where = self.root / STAGING
            raise UnsafeRemoval(f"refusing to remove {self.path(prefix)}: it is not strictly inside {where}")
        remove_staging_tree(self.root, self.path(prefix))

    def open_upload(self, key: str, *, visible: bool = False) -> Upload:
        return LocalUpload(self.path(key), key)

    def open_read(self, key: str) -> IO[bytes]:
        return open(self.path(key), "rb")

    def prune_uploads(self, prefix: str, keep: list[dict[str, Any]], tag: str) -> None:
        directory = self.path(prefix)
        if not directory.is_dir():
            return
        names = {p["name"] for p in keep}
        for path in directory.iterdir():
            if path.name.endswith(IN_PROGRESS_SUFFIX) or (path.name.startswith("part-") and path.name not in names):
                path.unlink(missing_ok=True)

    # ---- what only a local folder offers: the commit protocol's directory swap and the lease's lock

    def is_dir(self, key: str) -> bool:
        return self.path(key).is_dir()

    def swap_in(self, staged: str, target: str) -> None:
        """Put the staged folder at ``target``; the previous one (if any) ends up at ``staged``.

        One ``renameat2(RENAME_EXCHANGE)`` on Linux: a reader sees the old folder or the new one,
        never a gap. Elsewhere a rename aside and a rename in.
        """
        source, destination = self.path(staged), self.path(target)
        destination.parent.mkdir(parents=True, exist_ok=True)
        fsync_dir(source)
        if not destination.exists():
            os.replace(source, destination)
        elif not exchange_dirs(source, destination):
            aside = source.with_name(source.name + ".old")
            os.replace(destination, aside)
            os.replace(source, destination)
            os.replace(aside, source)
        fsync_dir(destination.parent)
        fsync_dir(source.parent)

    def lock(self, key: str) -> LocalLock:
        return LocalLock(self.path(key))


class LocalLock:
    """An exclusive ``flock`` on a file, held by this process: a kill -9 releases it.

    The file is removed on release. A competitor that opened it just before may win the lock on
    the removed file, so after locking it checks that the path still names the file it locked.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, holder: bytes) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder released and removed it meanwhile: lock the new one
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder, 0)
        os.fsync(fd)
        self._fd = fd
        return True

    def rewrite(self, holder: bytes) -> None:
        assert self._fd is not None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, holder, 0)

    def holder(self) -> bytes:
        try:
            return self.path.read_bytes()
        except OSError:
            return b""

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)  # closing drops the lock
            self._fd = None
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()  # _staging, unless another job stages or holds a lease
