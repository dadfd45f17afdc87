"""Small filesystem primitives for durable, atomic publishing (used by the local storage only)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
from pathlib import Path

from .errors import UnsafeRemoval

STAGING_DIR = "_staging"

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _load_renameat2():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        func = libc.renameat2
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_renameat2 = _load_renameat2()


def exchange_dirs(a: Path, b: Path) -> bool:
    """Atomically swap two existing directories (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False where the OS or file system cannot do it; the caller then falls back.
    """
    if _renameat2 is None:
        return False
    rc = _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: not supported here
        return False
    raise OSError(err, os.strerror(err), str(a))


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename: never a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def remove_staging_tree(output_root: Path, path: Path) -> None:
    """Remove ``path`` only if it lies strictly inside ``output_root/_staging/``; else raise.

    Defence in depth behind the name rule (:mod:`exporter.names`): whatever path reaches it, this
    never removes the output root, the staging area itself or a published partition. The parent is
    resolved (so ``..`` and symlinked parents cannot lead elsewhere) but ``path`` itself is not: a
    symlink there is unlinked, never its target's contents. A missing ``path`` is nothing to do.
    """

    def refuse(why: str) -> UnsafeRemoval:
        return UnsafeRemoval(f"refusing to remove {path}: {why}")

    path = Path(path)
    if ".." in path.parts:
        raise refuse("it has a '..' component")
    if path.name in ("", "."):
        raise refuse("it does not name a folder inside the staging area")
    staging = Path(output_root).resolve() / STAGING_DIR
    if staging.is_symlink():
        raise refuse(f"{staging} is a symlink, so its contents may be anything")
    target = Path(os.path.abspath(path)).parent.resolve() / path.name
    if target == staging or staging not in target.parents:
        raise refuse(f"it is not inside {staging}")
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        target.unlink(missing_ok=True)
    elif target.exists():
        # rmtree unlinks the symlinks it meets below the top, never their targets' contents
        shutil.rmtree(target, ignore_errors=True)
