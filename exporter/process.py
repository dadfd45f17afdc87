"""Process-wide set-up for the ``exporter`` command: memory and CPU that an export does not need.

Only the console entry point (:func:`entry`, also ``python -m exporter``) calls :func:`prepare`;
importing the package as a library (tests, an Airflow task) changes nothing in the host process.
"""

from __future__ import annotations

import gc
import importlib.abc
import os
import sys


class _RefusePandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"{name} is not loaded by the exporter", name=name)
        return None


def keep_pandas_unloaded() -> bool:
    """Stop pyarrow from importing pandas behind our back; True if that worked.

    ``pa.array``, ``pa.scalar`` and ``pa.table`` ask pyarrow's pandas shim whether a value is a
    pandas object, and the shim's first question imports pandas: 46 MB of resident memory and
    33,000 more objects for the cyclic GC to walk, in a process that never touches a DataFrame.
    The shim asks once and remembers the answer, so we let it ask while pandas cannot be found,
    then step aside: a later ``import pandas`` (or ``Table.to_pandas()``) still works.
    """
    if "pandas" in sys.modules:
        return False
    import pyarrow as pa

    finder = _RefusePandas()
    sys.meta_path.insert(0, finder)
    try:
        pa.array([0])  # the shim's first question, answered "no pandas" once and for all
    finally:
        sys.meta_path.remove(finder)
    return "pandas" not in sys.modules


def prepare() -> None:
    """Call before anything imports pyarrow."""
    # Arrow's C allocator for everything, the Parquet writer's C++ buffers included: Arrow reads
    # the variable once, at its first allocation (``pa.set_memory_pool`` reaches only the buffers
    # pyarrow's Python API allocates). mimalloc reserved an arena of transparent huge pages and
    # kept ~20 MB more resident at the same speed (1,000,000 accounts). A value the user set wins.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    keep_pandas_unloaded()

    from . import runner  # noqa: F401  (what a run imports, before the freeze below)
    from .sources import registry

    registry()
    # start-up objects live as long as the process: take them out of the collector's scans
    gc.freeze()


def entry() -> None:
    """The ``exporter`` console command."""
    prepare()
    from .cli import main

    main()
