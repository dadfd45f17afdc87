"""Values that become folder names (job, source, dataset, a checkpoint's run id) follow one rule,
and the staging removal refuses whatever lies outside ``OUTPUT/_staging/``, symlinks included.

The command-line cases run the real ``python -m exporter run`` against an output folder holding a
published snapshot and another job's interrupted staging area, and compare every byte of it before
and after: a job named ``..`` used to delete that whole folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from exporter.errors import ExporterError, JobFileError, UnsafeRemoval
from exporter.fsutil import remove_staging_tree
from exporter.jobs import load_job, parse_job
from exporter.names import MAX_LENGTH, check_name, name_problem
from exporter.sources import registry

from .chaos_helpers import error_lines, exporter_command
from .helpers import run

SANDBOX = "[sources.tradesync.sandbox]\naccounts = 4\ntrades_per_account = 3\nrate_limit_rps = 0\n"


def tree(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: files as (size, sha256), symlinks as their target, folders as
    present. Equal trees mean nothing was removed, added or rewritten."""
    found: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):  # never follows a symlinked folder
        for name in dirs + files:
            path = Path(folder) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                found[key] = ("link", os.readlink(path))
            elif path.is_dir():
                found[key] = ("dir",)
            else:
                data = path.read_bytes()
                found[key] = (len(data), hashlib.sha256(data).hexdigest())
    return found


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    "name",
    ["nightly", "tradesync", "trades_incremental", "a", "A-1_b.c", "v1.2", "x" * MAX_LENGTH, "CONSOLE", "nul_x"],
)
def test_ordinary_names_pass(name: str) -> None:
    assert name_problem(name) is None
    assert check_name(name, "job.toml", "key 'name'") == name


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "empty"),
        (".", "relative path"),
        ("..", "relative path"),
        (".hidden", "starts with '.'"),
        ("-x", "starts with '-'"),
        ("../x", "path separator"),
        ("a/b", "path separator"),
        ("a\\b", "path separator"),
        ("/abs", "path separator"),
        ("a\nb", "control character"),
        ("a\x00b", "control character"),
        ("tab\there", "control character"),
        ("a b", "contains ' '"),
        ("trailing ", "contains ' '"),
        ("name.", "ends with '.'"),
        ("x" * (MAX_LENGTH + 1), f"more than {MAX_LENGTH}"),
        ("CON", "reserved on Windows"),
        ("nul", "reserved on Windows"),
        ("com1", "reserved on Windows"),
        ("LPT9.parquet", "reserved on Windows"),
        ("snapshot_date=1", "contains '='"),
        ("café", "contains 'é'"),
        ("a*?", "contains '*?'"),
        (None, "not a string"),
        (3, "not a string"),
    ],
)
def test_names_that_are_not_plain_names_are_refused(name: object, problem: str) -> None:
    found = name_problem(name)
    assert found is not None and problem in found, found
    with pytest.raises(JobFileError) as info:
        check_name(name, "jobs/x.toml", "key 'name'")
    message = str(info.value)
    assert info.value.exit_code == 2
    assert message.startswith("jobs/x.toml: key 'name': ") and problem in message
    assert "\n" not in message


def test_every_built_in_source_and_dataset_folder_follows_the_rule() -> None:
    """The folders a run publishes to come from the source classes: they obey the same rule."""
    sources = registry()
    assert sources
    for kind, cls in sources.items():
        assert name_problem(kind) is None, kind
        for dataset in cls.DATASETS:
            assert name_problem(dataset) is None, dataset
            assert name_problem(f"{dataset}_incremental") is None, dataset


# --------------------------------------------------------------------------- job files and flags


def refusal(raw: dict, path: str = "jobs/x.toml") -> str:
    with pytest.raises(JobFileError) as info:
        parse_job(raw, Path(path), registry())
    assert info.value.exit_code == 2
    return str(info.value)


def test_a_source_key_that_is_a_path_is_refused_before_the_registry_lookup() -> None:
    message = refusal({"name": "ok", "sources": {"../tradesync": {}}})
    assert message.startswith("jobs/x.toml: key 'sources.<name>': '../tradesync' is not a valid name")
    assert "path separator" in message


@pytest.mark.parametrize("dataset", ["..", "../../etc", "-rf", ""])
def test_dataset_names_in_the_job_file_are_refused(dataset: str) -> None:
    message = refusal({"name": "ok", "sources": {"tradesync": {"datasets": ["accounts", dataset]}}})
    assert message.startswith(f"jobs/x.toml: key 'sources.tradesync.datasets': {dataset!r} is not a valid name")


def test_dataset_flag_values_are_refused() -> None:
    job = parse_job({"name": "ok", "sources": {"tradesync": {}}}, Path("jobs/x.toml"), registry())
    with pytest.raises(JobFileError) as info:
        job.with_overrides(datasets=("accounts", "../accounts"))
    assert str(info.value).startswith("jobs/x.toml: --dataset: '../accounts' is not a valid name")
    assert job.with_overrides(datasets=("accounts",)).sources[0].datasets == ("accounts",)


def test_a_name_taken_from_the_file_name_follows_the_rule_and_says_so(tmp_path: Path) -> None:
    hidden = tmp_path / ".hidden.toml"
    hidden.write_text(SANDBOX)
    with pytest.raises(JobFileError) as info:
        load_job(hidden, registry())
    assert str(info.value).startswith(f"{hidden}: key 'name' (not set, so the file name): '.hidden'")
    plain = tmp_path / "plain.toml"
    plain.write_text(SANDBOX)
    assert load_job(plain, registry()).name == "plain"


# --------------------------------------------------------------------------- the real command


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An output folder with a published snapshot of today (what a hostile run would replace) and
    another job's staging area with a checkpoint (what a job named '.' would delete)."""
    output = tmp_path_factory.mktemp("populated") / "out"
    job_file = output.parent / "published.toml"
    job_file.write_text('name = "published"\n' + SANDBOX)
    result = run(load_job(job_file, registry()), output, {})
    assert {d.dataset for d in result.datasets} == {"accounts", "balances", "equity", "trades"}
    other = output / "_staging" / "other"
    staged = other / "20260101T000000000000Z-abcdef" / "tradesync" / "accounts" / "snapshot_date=2026-01-01"
    staged.mkdir(parents=True)
    shutil.copy(next(Path(result.datasets[0].path).glob("part-*.parquet")), staged / "part-00000.parquet")
    (other / "checkpoint.json").write_text(json.dumps({"version": 2, "job": "other", "run_id": "x"}))
    return output


def run_command(job_file: Path, output: Path):
    import subprocess

    return subprocess.run(
        exporter_command(["run", str(job_file), "--output", str(output)]),
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize("name", ["..", ".", "../x", "a/b", "-x", ""])
def test_a_job_named_like_a_path_exits_2_and_touches_nothing(name: str, populated: Path, tmp_path: Path) -> None:
    job_file = tmp_path / "hostile.toml"
    # a complete sandbox job: without the name rule it would run, publish and clean up
    job_file.write_text(f"name = {json.dumps(name)}\n" + SANDBOX)
    before = tree(populated)
    assert any("snapshot_date=" in key for key in before) and "_staging/other/checkpoint.json" in before

    done = run_command(job_file, populated)

    assert done.returncode == 2, done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and done.stderr.strip() == lines[0], done.stderr
    assert lines[0].startswith(f"error: {job_file}: key 'name': {name!r} is not a valid name")
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert tree(populated) == before


def test_a_checkpoint_whose_run_id_is_a_path_is_refused(populated: Path, tmp_path: Path) -> None:
    """A run id read back from a checkpoint names a folder too: ``../../victim`` would stage (and
    publish from) a folder outside the staging area."""
    job_file = tmp_path / "tampered.toml"
    job_file.write_text('name = "tampered"\n' + SANDBOX)
    fingerprint = load_job(job_file, registry()).fingerprint()
    checkpoint = populated / "_staging" / "tampered" / "checkpoint.json"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text(json.dumps({
        "version": 2, "job": "tampered", "fingerprint": fingerprint, "run_id": "../../victim",
        "snapshot_date": "2026-01-01", "started_at": "2026-01-01T00:00:00+00:00",
    }))
    try:
        before = tree(populated)
        done = run_command(job_file, populated)
        assert done.returncode == 2, done.stderr
        lines = error_lines(done.stderr)
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith(f"error: checkpoint {checkpoint}: run_id '../../victim' is not a valid name")
        assert tree(populated) == before
    finally:
        shutil.rmtree(checkpoint.parent)  # the module's output folder is shared


@pytest.mark.parametrize("resume", ["auto", "fresh"])
@pytest.mark.parametrize("name", ["..", "."])
def test_the_runner_refuses_to_remove_output_even_if_a_bad_name_reaches_it(
    name: str, resume: str, populated: Path
) -> None:
    """Defence in depth: a job spec built around the job-file rule still cannot make a run remove
    OUTPUT (``..``) or every job's staging area (``.``)."""
    job = replace(load_job(populated.parent / "published.toml", registry()), name=name)
    before = tree(populated)
    with pytest.raises(UnsafeRemoval):
        run(job, populated, {}, resume=resume)
    assert tree(populated) == before


# --------------------------------------------------------------------------- the removal guard


@pytest.fixture
def output(tmp_path: Path) -> Path:
    """OUTPUT with a published partition, this job's staging tree and another job's."""
    out = tmp_path / "out"
    published = out / "tradesync" / "accounts" / "snapshot_date=2026-01-01"
    published.mkdir(parents=True)
    (published / "part-00000.parquet").write_bytes(b"published rows")
    (published / "_manifest.json").write_text("{}")
    for job in ("job", "other"):
        run_dir = out / "_staging" / job / "run1" / "tradesync" / "accounts" / "snapshot_date=2026-01-02"
        run_dir.mkdir(parents=True)
        (run_dir / "part-00000.parquet").write_bytes(f"staged rows of {job}".encode())
        (out / "_staging" / job / "checkpoint.json").write_text("{}")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "keep.txt").write_text("not the exporter's")
    return out


def refused(output_root: Path, path: Path | str, what: str) -> None:
    everything = output_root.parent
    before = tree(everything)
    with pytest.raises(UnsafeRemoval) as info:
        remove_staging_tree(output_root, Path(path))
    assert isinstance(info.value, ExporterError)
    assert what in str(info.value) and "\n" not in str(info.value)
    assert tree(everything) == before


def test_the_guard_removes_one_job_staging_tree_and_nothing_else(output: Path) -> None:
    before = tree(output.parent)
    remove_staging_tree(output, output / "_staging" / "job")
    after = tree(output.parent)
    gone = set(before) - set(after)
    assert gone and all(key.startswith("out/_staging/job") for key in gone)
    assert set(after) <= set(before) and "out/_staging/other/checkpoint.json" in after
    assert "out/tradesync/accounts/snapshot_date=2026-01-01/part-00000.parquet" in after
    remove_staging_tree(output, output / "_staging" / "job")  # already gone: nothing to do


def test_the_guard_works_with_relative_paths(output: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(output.parent)
    remove_staging_tree(Path("out"), Path("out/_staging/other"))
    assert not (output / "_staging" / "other").exists() and (output / "_staging" / "job").is_dir()
    refused(Path("out"), "out/_staging", "not inside")


@pytest.mark.parametrize(
    ("relative", "what"),
    [
        ("_staging/..", "'..'"),
        ("_staging/job/../..", "'..'"),
        ("_staging/job/../../tradesync", "'..'"),
        ("_staging/job/../other", "'..'"),
        ("", "not inside"),  # the output root itself
        (".", "not inside"),
        ("_staging", "not inside"),
        ("_staging/.", "not inside"),
        ("tradesync", "not inside"),
        ("tradesync/accounts/snapshot_date=2026-01-01", "not inside"),
        ("_stagingX/job", "not inside"),
    ],
)
def test_the_guard_refuses_hostile_paths(output: Path, relative: str, what: str) -> None:
    refused(output, output / relative if relative else output, what)


def test_the_guard_refuses_absolute_paths_elsewhere(output: Path) -> None:
    refused(output, output.parent / "elsewhere", "not inside")
    refused(output, output.parent, "not inside")
    refused(output, Path("/tmp"), "not inside")


def test_a_staging_folder_that_links_to_the_output_root_is_unlinked_not_followed(output: Path) -> None:
    link = output / "_staging" / "evil"
    link.symlink_to(output, target_is_directory=True)
    before = tree(output.parent)
    remove_staging_tree(output, link)
    assert not link.is_symlink()
    assert tree(output.parent) == {k: v for k, v in before.items() if k != "out/_staging/evil"}


def test_a_path_through_a_symlink_inside_staging_is_refused(output: Path) -> None:
    """``_staging/evil/tradesync`` is ``OUTPUT/tradesync`` once the link is resolved."""
    (output / "_staging" / "evil").symlink_to(output, target_is_directory=True)
    refused(output, output / "_staging" / "evil" / "tradesync", "not inside")


def test_a_symlink_deep_in_a_staging_tree_is_not_followed(output: Path) -> None:
    run_dir = output / "_staging" / "job" / "run1"
    (run_dir / "escape").symlink_to(output, target_is_directory=True)
    (run_dir / "outside").symlink_to(output.parent / "elsewhere", target_is_directory=True)
    before = tree(output.parent)
    remove_staging_tree(output, output / "_staging" / "job")
    after = tree(output.parent)
    assert not (output / "_staging" / "job").exists()
    assert after == {k: v for k, v in before.items() if not k.startswith("out/_staging/job")}


def test_a_staging_area_that_is_itself_a_symlink_is_refused(output: Path) -> None:
    """If ``OUTPUT/_staging`` links to OUTPUT, ``_staging/tradesync`` is the published source folder."""
    shutil.rmtree(output / "_staging")
    (output / "_staging").symlink_to(output, target_is_directory=True)
    refused(output, output / "_staging" / "tradesync", "is a symlink")
