"""Reading what a child process drew on a pseudo-terminal."""

from __future__ import annotations

import os


def read_screen(master: int) -> bytes:
    """Everything written to the terminal whose controlling side is ``master``, until the child's
    side is closed; closes ``master``."""
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return b"".join(chunks)
