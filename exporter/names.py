"""The one rule for values that become a folder name or an object-key segment.

Job names name the staging folder (``OUTPUT/_staging/<job>``), source kinds and dataset names the
published folders (``OUTPUT/<source>/<dataset>/``), a checkpoint's run id a folder under the staging
area. A value such as ``..`` or ``a/b`` would point those folders somewhere else, and a run removes
its staging folder: so every such value passes :func:`name_problem` before it is joined to a path.

The rule is deliberately narrow: it must hold on Linux, macOS and Windows file systems and as an
S3/GCS/Azure key segment, and a name must never be read as an option or a hidden file by the tools
that list these folders.
"""

from __future__ import annotations

import string

from .errors import JobFileError

MAX_LENGTH = 100
RULE = f"use 1-{MAX_LENGTH} ASCII letters, digits, '-', '_' or '.', not starting with '.' or '-', not ending with '.'"

_ALLOWED = frozenset(string.ascii_letters + string.digits + "-_.")
# device names Windows reserves in every folder, with any extension ("nul.txt" included)
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"{port}{n}" for port in ("COM", "LPT") for n in range(10)}
)


def name_problem(value: object) -> str | None:
    """Why ``value`` cannot be a folder name or key segment, or None when it can."""
    if not isinstance(value, str):
        return f"not a string but {type(value).__name__}"
    if not value:
        return "empty"
    if len(value) > MAX_LENGTH:
        return f"{len(value)} characters, more than {MAX_LENGTH}"
    bad = [c for c in value if c not in _ALLOWED]
    if any(c in "/\\" for c in bad):
        return "contains a path separator"
    if any(not c.isprintable() for c in bad):
        return "contains a control character"
    if bad:
        return f"contains {''.join(dict.fromkeys(bad))!r}"
    if value in (".", ".."):
        return "a relative path: this folder or its parent"
    if value[0] == ".":
        # '.' and '..' are the folder itself and its parent; '.x' is hidden (and skipped by
        # Spark/Hive readers of a dataset folder)
        return "starts with '.'"
    if value[0] == "-":
        return "starts with '-' (command-line tools read it as an option)"
    if value[-1] == ".":
        return "ends with '.' (Windows drops it)"
    if value.split(".", 1)[0].upper() in _WINDOWS_RESERVED:
        return "a device name reserved on Windows"
    return None


def shown(value: object) -> str:
    """The value for an error line: quoted and escaped (never a raw newline), at most ~60 chars."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_name(value: object, where: str, what: str) -> str:
    """``value`` if it is a valid name, else a :class:`JobFileError` naming the file and the key.

    ``where`` is the job file, ``what`` the key or flag, e.g. ``key 'name'`` or ``--dataset``.
    """
    problem = name_problem(value)
    if problem is not None:
        raise JobFileError(f"{where}: {what}: {shown(value)} is not a valid name ({problem}); {RULE}")
    assert isinstance(value, str)
    return value
