"""The ``exporter`` command's process set-up (exporter/process.py), checked in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq


def python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_pyarrow_works_without_loading_pandas_and_pandas_stays_importable(tmp_path: Path) -> None:
    code = """
import sys
from exporter.process import keep_pandas_unloaded
assert keep_pandas_unloaded()
import pyarrow as pa
pa.array([1, 2]); pa.scalar(5, pa.timestamp("us", tz="UTC")); pa.table({"a": [1]})
print("loaded after conversions:", "pandas" in sys.modules)
frame = pa.table({"a": [1, 2]}).to_pandas()  # a later, deliberate use of pandas still works
print("to_pandas:", type(frame).__name__, int(frame["a"].sum()))
"""
    done = python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "loaded after conversions: False" in done.stdout
    assert "to_pandas: DataFrame 3" in done.stdout


def test_an_export_run_by_the_command_never_loads_pandas(tmp_path: Path) -> None:
    """pandas costs 46 MB of resident memory; a whole demo export (both sources) must not need it."""
    code = f"""
import sys
from exporter.process import entry
sys.argv = ["exporter", "demo", "--accounts", "120", "--output", {str(tmp_path / "out")!r}]
try:
    entry()
except SystemExit as exit:
    assert not exit.code, exit.code
print("pandas loaded:", "pandas" in sys.modules)
import pyarrow as pa
print("arrow allocator:", pa.default_memory_pool().backend_name)
"""
    done = python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "pandas loaded: False" in done.stdout
    assert "arrow allocator: system" in done.stdout
    accounts = list((tmp_path / "out" / "tradesync" / "accounts").rglob("*.parquet"))
    assert sum(pq.read_metadata(f).num_rows for f in accounts) == 120
