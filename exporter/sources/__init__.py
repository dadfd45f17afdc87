"""Sources: one module per API, mostly declarations of *what* to fetch.

A source says which streams exist (a collection walked one way), the record schema of each, and
which datasets each stream feeds (``accounts`` feeds ``accounts``, ``balances`` and ``equity``).
The runner owns the *how*: concurrency, conversion, writing and checkpoints. :mod:`.base` holds the
base class and the declaration types, :mod:`.canonical` the cross-source balances/equity shape.
"""

from __future__ import annotations

from typing import Any

from ..http import ErrorReader
from .base import (
    Connection,
    Dataset,
    Feed,
    Projection,
    Source,
    Stream,
    StreamDef,
    Walk,
    as_is,
    identity,
    stamped,
    with_snapshot_time,
    written_names,
)


def registry() -> dict[str, Any]:
    """Source kinds by name (imported lazily so a job only loads what it uses)."""
    from .traderevolution import TraderEvolutionSource
    from .tradesync import TradesyncSource

    return {"tradesync": TradesyncSource, "traderevolution": TraderEvolutionSource}


__all__ = [
    "Connection",
    "Dataset",
    "ErrorReader",
    "Feed",
    "Projection",
    "Source",
    "Stream",
    "StreamDef",
    "Walk",
    "as_is",
    "identity",
    "registry",
    "stamped",
    "with_snapshot_time",
    "written_names",
]
