"""What a new user meets in the first ten minutes (issue 18), each through the real command line:
the resume hint, conflicting flags, failures before the first request, wrong URLs, unreachable
hosts, an output folder that cannot be made, JSON logs, the standalone simulators, the demo's
closing query, the README's snippets and reference, the benchmark's results folder, the live display.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import pty
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
import termios
import tomllib
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from exporter.cli import main
from exporter.errors import JobFileError, RetriesExhausted
from exporter.http import ClientSettings, HttpClient, Response, RetryPolicy
from exporter.jobs import parse_job
from exporter.sandbox.traderevolution import BASE_PATH, TraderEvolutionSimConfig, te_simulator
from exporter.sandbox.tradesync import TradesyncSimConfig, tradesync_simulator
from exporter.sources import registry

from .chaos_helpers import (
    SIM_CREDENTIALS,
    checkpoint_path,
    durable_rows,
    error_lines,
    exporter_env,
    logged_simulator,
    read_checkpoint,
    run_exporter,
    start_exporter,
    wait_for,
    write_job,
)
from .helpers import make_job, run, tradesync_env
from .terminal import read_screen

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
TE_CREDENTIALS = {"TRADEREVOLUTION_LOGIN": "sim-user", "TRADEREVOLUTION_PASSWORD": "sim-pass"}


def clean_env(**extra: str) -> dict[str, str]:
    """The process environment without any source's variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADESYNC_", "TRADEREVOLUTION_"))}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def only_error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


# --------------------------------------------------------------------------- 1, 7. the resume hint (and JSON lines)


def test_the_resume_hint_repeats_every_option_quoted_and_resumes_when_run_literally(tmp_path: Path) -> None:
    job_file = write_job(tmp_path / "hint job.toml", "hint", concurrency=2, page_size=200, parallel_walks=1)
    output = tmp_path / "it's out"  # a space and a quote: the hint must survive a shell
    args = ["run", str(job_file), "--output", str(output), "--dataset", "accounts", "--dataset", "equity",
            "--concurrency", "2", "--log-format", "json"]
    config = TradesyncSimConfig(accounts=6000, trades_per_account=0, rate_limit_rps=0, latency_ms=20)
    with logged_simulator(config) as (url, _, _log):
        env = exporter_env(url)
        process = start_exporter(args, env)
        wait_for(lambda: durable_rows(read_checkpoint(output, "hint")) > 0, timeout=60, process=process,
                 what="a first durable part file")
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 130, stderr[-3000:]
        lines = [json.loads(line) for line in stderr.splitlines()]  # 7: every line is JSON
        assert lines[-1]["level"] == "error" and lines[-1]["exit_code"] == 130
        hint = lines[-1]["message"].split("Resume with: ", 1)[1]
        words = shlex.split(hint)
        assert words == ["exporter", *args, "--resume"]
        resumed = subprocess.run([sys.executable, "-m", "exporter", *words[1:]], env=env, capture_output=True,
                                 text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "(resumed 1x)" in resumed.stdout
    assert all(json.loads(line) for line in resumed.stderr.splitlines())
    for dataset in ("accounts", "equity"):
        table = ds.dataset(output / "tradesync" / dataset, format="parquet", partitioning="hive").to_table()
        ids = table.column("id" if dataset == "accounts" else "account_id").to_pylist()
        assert len(ids) == len(set(ids)) == 6000
    assert not (output / "tradesync" / "balances").exists()  # --dataset was repeated, not dropped


# --------------------------------------------------------------------------- 2. --resume --fresh


def test_resume_and_fresh_together_are_refused_with_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["run", str(ROOT / "jobs" / "demo.toml"), "--output", str(tmp_path),
                                       "--resume", "--fresh"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: --resume and --fresh exclude")
    assert list(tmp_path.iterdir()) == []  # refused before anything was touched


# --------------------------------------------------------------------------- 3. no checkpoint before the first page


def test_a_run_that_fails_before_its_first_request_leaves_no_checkpoint(tmp_path: Path) -> None:
    job_file = write_job(tmp_path / "job.toml", "first", page_size=500)
    output = tmp_path / "out"
    with tradesync_simulator(TradesyncSimConfig(accounts=1200, trades_per_account=1, rate_limit_rps=0)) as (url, sim):
        # no credentials: exit 3, and nothing reached the API
        missing = run_exporter(["run", str(job_file), "--output", str(output)], clean_env(TRADESYNC_BASE_URL=url))
        assert "TRADESYNC_API_KEY" in only_error_line(missing, 3)
        assert sim.state()["requests_total"] == 0
        assert not checkpoint_path(output, "first").exists()
        # nothing listens on the URL: exit 1, no checkpoint either
        refused = run_exporter(["run", str(job_file), "--output", str(output)],
                               clean_env(**SIM_CREDENTIALS, TRADESYNC_BASE_URL=f"http://127.0.0.1:{free_port()}"))
        only_error_line(refused, 1)
        assert not checkpoint_path(output, "first").exists()
        # the user fixes the job file (another definition) and the environment: the run just works
        write_job(job_file, "first", page_size=300, datasets=["accounts", "trades"])
        fixed = run_exporter(["run", str(job_file), "--output", str(output)], exporter_env(url))
        expected_trades = sim.state()["trades"]
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert "different definition" not in fixed.stderr and "resuming" not in fixed.stderr
    accounts = ds.dataset(output / "tradesync" / "accounts", format="parquet", partitioning="hive").to_table()
    trades = ds.dataset(output / "tradesync" / "trades", format="parquet", partitioning="hive").to_table()
    assert accounts.num_rows == 1200 and trades.num_rows == expected_trades


# --------------------------------------------------------------------------- 4. a TraderEvolution URL without its path


def test_a_traderevolution_url_without_the_api_path_is_a_set_up_error_not_an_auth_error(tmp_path: Path) -> None:
    job_file = tmp_path / "te.toml"
    job_file.write_text('name = "te"\n[sources.traderevolution]\ndatasets = ["accounts"]\nrps = 0\n')
    config = TraderEvolutionSimConfig(users=2, positions_per_account=1, rate_limit_rps=0)
    with te_simulator(config) as (url, simulator):
        root = url.removesuffix(BASE_PATH)
        wrong = run_exporter(["run", str(job_file), "--output", str(tmp_path / "out")],
                             clean_env(**TE_CREDENTIALS, TRADEREVOLUTION_BASE_URL=root))
        logins_then = simulator.state()["logins"]
        right = run_exporter(["run", str(job_file), "--output", str(tmp_path / "out")],
                             clean_env(**TE_CREDENTIALS, TRADEREVOLUTION_BASE_URL=url))
    line = only_error_line(wrong, 2)
    assert "TRADEREVOLUTION_BASE_URL" in line and "https://<host>:8443/proftrading/rest" in line
    assert "lacks /proftrading/rest" in line and "HTTP 404" in line
    assert "login failed" not in line and "sim-pass" not in wrong.stderr + wrong.stdout
    assert logins_then == 0
    assert right.returncode == 0, right.stderr[-3000:]  # the same credentials with the full URL work


# --------------------------------------------------------------------------- 5. hosts that cannot be reached


@pytest.mark.parametrize(
    ("variable", "url", "reason"),
    [
        ("TRADESYNC_BASE_URL", "http://127.0.0.1:{port}", "Connection refused"),
        ("TRADESYNC_BASE_URL", "http://no-such-host.invalid", "not known"),
        ("TRADEREVOLUTION_BASE_URL", "http://localhost:{port}/proftrading/rest", "Connection refused"),
    ],
)
def test_an_unreachable_host_names_its_variable_and_fails_without_retrying(
    tmp_path: Path, variable: str, url: str, reason: str
) -> None:
    kind = "tradesync" if variable.startswith("TRADESYNC") else "traderevolution"
    job_file = tmp_path / "job.toml"
    job_file.write_text(f'name = "reach"\n[sources.{kind}]\n')
    port = free_port()
    env = clean_env(**SIM_CREDENTIALS, **TE_CREDENTIALS, **{variable: url.format(port=port)})
    result = run_exporter(["run", str(job_file), "--output", str(tmp_path / "out"), "--verbose"], env)
    line = only_error_line(result, 1)
    host = "no-such-host.invalid:80" if "invalid" in url else f":{port}"
    assert variable in line and host in line and reason in line, line
    assert "retrying" not in result.stderr  # --verbose logs every retry: there was none


def test_a_refused_connection_after_the_server_answered_is_retried() -> None:
    """The fast failure is for set-up mistakes only: a server that answered and then went away is an
    outage, retried as before (up to max_attempts)."""

    class NoAuth:
        async def headers(self, client: HttpClient) -> dict[str, str]:
            return {}

        async def on_unauthorized(self, client: HttpClient, response: Response) -> bool:
            return False

    server = ExitStack()
    url, _ = server.enter_context(tradesync_simulator(TradesyncSimConfig(accounts=1, trades_per_account=0)))

    async def go() -> tuple[int, int]:
        settings = ClientSettings(base_url=url, retry=RetryPolicy(max_attempts=3, base_delay=0.01),
                                  base_url_from="TRADESYNC_BASE_URL")
        async with HttpClient(settings, auth=NoAuth(), read_error=lambda r: "") as client:
            first = await client.request("GET", "/_sim/state", decode=lambda r: r.status)
            server.close()  # the server goes away; its port now refuses connections
            with pytest.raises(RetriesExhausted, match=r"TRADESYNC_BASE_URL.*Connection refused"):
                await client.request("GET", "/_sim/state", decode=lambda r: r.status)
            return first, client.stats.retries

    try:
        first, retries = asyncio.run(go())
    finally:
        server.close()
    assert first == 200 and retries == 2


# --------------------------------------------------------------------------- 6. an output folder that cannot be made


@pytest.mark.parametrize("command", [["run", str(ROOT / "jobs" / "demo.toml")], ["demo", "--accounts", "10"]])
@pytest.mark.parametrize("where", ["under /proc", "under a file"])
def test_an_output_folder_that_cannot_be_created_is_one_line_and_exit_2(
    tmp_path: Path, command: list[str], where: str
) -> None:
    if where == "under /proc":
        output, reason = "/proc/forbidden", "No such file or directory"
    else:
        (tmp_path / "a file").write_text("not a folder")
        output, reason = str(tmp_path / "a file" / "out"), "Not a directory"
    result = run_exporter([*command, "--output", output], clean_env())
    assert only_error_line(result, 2) == f"error: cannot create the output folder {output}: {reason}"


# --------------------------------------------------------------------------- 7. JSON on stderr


def test_with_log_format_json_every_stderr_line_is_json_the_error_too(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nrows_per_file = "many"\n[sources.tradesync]\n')
    in_file = tmp_path / "json.toml"
    in_file.write_text('name = "json"\nlog_format = "json"\n[sources.tradesync]\n')
    cases = [
        (["run", str(bad), "--log-format", "json"], 2, "rows_per_file"),  # the job file is not read yet
        (["run", str(in_file)], 3, "TRADESYNC_API_KEY"),  # json from the job file, missing credentials
        (["run", str(in_file), "--output", "/proc/forbidden"], 2, "cannot create the output folder"),
        (["demo", "--log-format", "json", "--output", "/proc/forbidden"], 2, "cannot create the output folder"),
    ]
    for args, code, words in cases:
        result = run_exporter(args, clean_env())
        assert result.returncode == code, (args, result.stderr)
        lines = [json.loads(line) for line in result.stderr.splitlines()]  # fails on any plain line
        assert len(lines) >= 1 and lines[-1]["level"] == "error" and lines[-1]["exit_code"] == code
        assert words in lines[-1]["message"], (args, lines)


# --------------------------------------------------------------------------- 8. the standalone simulators


def sim_state(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sim/state", timeout=10) as response:
            return json.loads(response.read())
    except OSError:
        return None


def sim_post(port: int, route: str) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{route}", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass


@contextmanager
def standalone(*args: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """``exporter sandbox ...`` in its own process, as the README starts it, on a free port."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "exporter", "sandbox", *args, "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    try:
        wait_for(lambda: sim_state(port), timeout=60, what=f"the {args[0]} simulator", process=process,
                 interval=0.05)
        yield port, process
    finally:
        process.terminate()
        process.communicate(timeout=30)


def count_rows(folder: Path) -> int:
    return ds.dataset(folder, format="parquet", partitioning="hive").count_rows()


def test_the_shipped_jobs_export_every_dataset_from_the_standalone_simulators(tmp_path: Path) -> None:
    started = datetime.now(UTC).replace(microsecond=0)
    output = tmp_path / "output"
    with (
        standalone("tradesync", "--accounts", "30", "--trades-per-account", "10", "--rps", "0") as (ts, ts_process),
        standalone("traderevolution", "--users", "3", "--positions-per-account", "10", "--rps", "0") as (te, _),
    ):
        ts_state, te_state = sim_state(ts), sim_state(te)
        assert ts_state is not None and te_state is not None
        # both clocks start at "now": after this test began, before this line
        for clock in (ts_state["clock"], te_state["clock"]):
            assert started <= datetime.fromisoformat(clock) <= datetime.now(UTC)
        env = clean_env(**SIM_CREDENTIALS, **TE_CREDENTIALS, TRADESYNC_BASE_URL=f"http://127.0.0.1:{ts}",
                        TRADEREVOLUTION_BASE_URL=f"http://127.0.0.1:{te}{BASE_PATH}")
        result = run_exporter(["run", str(ROOT / "jobs" / "nightly.toml"), "--output", str(output), "--rps", "0"],
                              env, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        # the clock controls the README shows
        sim_post(te, "/_sim/advance?seconds=3600")
        advanced = sim_state(te)
        ts_process.terminate()
        printed, _ = ts_process.communicate(timeout=30)
    assert advanced is not None and advanced["clock_ms"] == te_state["clock_ms"] + 3_600_000
    assert f"export TRADESYNC_BASE_URL=http://127.0.0.1:{ts} TRADESYNC_API_KEY=sim-key" in printed
    counts = te_state["counts"]
    assert count_rows(output / "traderevolution" / "accounts") == counts["accounts"] > 0
    # since_days = 90 counts back from now: the whole history the simulator made
    assert count_rows(output / "traderevolution" / "trades") == counts["fills"] > 0
    assert count_rows(output / "traderevolution" / "account_operations") == counts["operations"] > 0
    assert count_rows(output / "tradesync" / "accounts") == ts_state["accounts"] == 30
    assert count_rows(output / "tradesync" / "trades") == ts_state["trades"] > 0


# --------------------------------------------------------------------------- 9. the demo's closing query


def test_the_demos_closing_query_runs_with_what_is_installed(tmp_path: Path) -> None:
    output = tmp_path / "demo out"
    result = run_exporter(["demo", "--accounts", "40", "--output", str(output)], clean_env(), timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    (last,) = [line for line in result.stdout.splitlines() if line.startswith("Query it: ")]
    command = last.removeprefix("Query it: ")
    assert shlex.split(command)[0] == sys.executable  # this install's Python, not a program it lacks
    query = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert query.returncode == 0, query.stderr
    accounts: dict[str, int] = {}
    for line in query.stdout.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0] in ("tradesync", "traderevolution"):
            accounts[cells[0]] = accounts.get(cells[0], 0) + int(cells[2])
    assert accounts == {
        "tradesync": 40,
        "traderevolution": count_rows(output / "traderevolution" / "balances"),
    }


# --------------------------------------------------------------------------- 10. the README's pyarrow snippet


def test_the_readme_pyarrow_snippet_keeps_snapshot_date_and_drifted_columns(tmp_path: Path, monkeypatch) -> None:
    code = re.search(r"pandas / pyarrow:\n\n```python\n(.*?)```", README, re.S)
    assert code is not None
    output = tmp_path / "output"  # the snippet's path, relative to the working folder
    job = make_job({"tradesync": {"datasets": ["accounts"]}})
    day = datetime(2025, 3, 1, 6, tzinfo=UTC)
    with tradesync_simulator(accounts=50, trades_per_account=0, rate_limit_rps=0) as (url, _):
        run(job, output, tradesync_env(url), now=day)
    with tradesync_simulator(accounts=50, trades_per_account=0, rate_limit_rps=0, drift="new_field") as (url, _):
        run(job, output, tradesync_env(url), now=day + timedelta(days=1))
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(code.group(1), namespace)
    accounts = namespace["accounts"]
    assert len(accounts) == 100
    assert accounts["snapshot_date"].value_counts().to_dict() == {"2025-03-01": 50, "2025-03-02": 50}
    by_day = accounts.groupby("snapshot_date")["risk_score"].count().to_dict()  # the drifted column
    assert by_day["2025-03-01"] == 0 and by_day["2025-03-02"] > 0


# --------------------------------------------------------------------------- 11. null tokens under the written name


def test_manifest_null_tokens_name_the_parquet_columns(tmp_path: Path) -> None:
    job_file = tmp_path / "te.toml"
    job_file.write_text('name = "tokens"\n[sources.traderevolution]\ndatasets = ["balances", "equity"]\nrps = 0\n')
    output = tmp_path / "out"
    with te_simulator(TraderEvolutionSimConfig(users=5, positions_per_account=2, rate_limit_rps=0)) as (url, _):
        result = run_exporter(["run", str(job_file), "--output", str(output)],
                              clean_env(**TE_CREDENTIALS, TRADEREVOLUTION_BASE_URL=url))
    assert result.returncode == 0, result.stderr[-3000:]
    for dataset in ("balances", "equity"):
        (partition,) = (output / "traderevolution" / dataset).glob("snapshot_date=*")
        tokens = json.loads((partition / "_manifest.json").read_text())["datasets"][dataset]["null_tokens"]
        table = pq.ParquetDataset(partition).read()
        assert tokens and set(tokens) <= set(table.column_names), (dataset, tokens)
        assert tokens["te_waived_margin"] == table.num_rows == table.column("te_waived_margin").null_count > 0
        for column, count in tokens.items():
            assert table.column(column).null_count >= count


# --------------------------------------------------------------------------- 12. the README's reference


def leaf_commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from leaf_commands(command, path + " ")
        else:
            yield path, command


def usage_entries(paths: list[str]) -> dict[str, str]:
    """The README's usage block, one text per command (its line and the lines continuing it)."""
    block = README.split("### Command line\n\n", 1)[1]
    entries: dict[str, str] = {}
    current = None
    for line in block.splitlines():
        if not line.startswith("    "):
            break
        text = line.strip()
        if text.startswith("exporter "):
            current = max((p for p in paths if text.startswith(f"exporter {p} ") or text == f"exporter {p}"),
                          key=len)
            entries[current] = ""
        assert current is not None
        entries[current] += " " + text
    return entries


def test_the_readme_usage_lines_name_every_option_and_default() -> None:
    commands = dict(leaf_commands(main))
    entries = usage_entries(list(commands))
    assert set(entries) == set(commands)
    for path, command in commands.items():
        text = entries[path]
        options = [p for p in command.params if isinstance(p, click.Option)]
        names = {o for p in options for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}
        documented = set(re.findall(r"--[a-z][a-z0-9-]*", text))
        assert names - documented == set(), f"exporter {path}: undocumented"
        assert documented - names == set(), f"exporter {path}: no such option"
        for option in options:
            if option.show_default and option.default not in (None, False, ""):
                flag = max(option.opts, key=len)
                shown = re.escape(str(option.default))
                assert re.search(rf"{re.escape(flag)} [^\]\s]*={shown}\]", text), f"exporter {path} {flag}"


def allowed_keys(raw: dict[str, Any]) -> set[str]:
    """The keys a job-file table allows, as the job loader itself lists them for an unknown key."""
    with pytest.raises(JobFileError) as info:
        parse_job(raw, Path("probe.toml"), registry())
    found = re.search(r"allowed here: ([^)]*)\)", str(info.value))
    assert found is not None, str(info.value)
    return set(found.group(1).split(", "))


def test_the_readme_job_file_is_valid_and_names_every_key() -> None:
    found = re.search(r"## Job files.*?```toml\n(.*?)```", README, re.S)
    assert found is not None
    text = found.group(1)
    raw = tomllib.loads(text)
    parse_job(raw, Path("README.md"), registry())  # valid as written
    words = set(re.findall(r"[a-z_0-9]+", text))
    tables = [{"zz": 1, "sources": {"tradesync": {}}}, {"s3": {"zz": 1}, "sources": {"tradesync": {}}}]
    tables += [{"sources": {kind: {"zz": 1}}} for kind in registry()]
    for table in tables:
        keys = allowed_keys(table)
        assert keys - words == set(), keys - words
    assert re.search(r"^output = ", text, re.M)  # the key a new user looked for


# --------------------------------------------------------------------------- 13. the benchmark's results


def test_a_quick_benchmark_does_not_write_the_committed_results(tmp_path: Path, monkeypatch) -> None:
    import tempfile

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("bench_run_under_test", ROOT / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where a temporary results folder goes
    committed = ROOT / "bench" / "results"
    for args in (["--quick"], ["--sizes", "5000"], ["--latencies", "0"], ["--repeat", "3"]):
        folder = bench.parse_args(args).results
        assert folder.parent == tmp_path and folder.is_dir() and not any(folder.iterdir()), args
    assert len(list(tmp_path.iterdir())) == 4  # a new folder each time
    assert bench.parse_args([]).results == committed  # the full run: the results the README cites
    assert bench.parse_args(["--quick", "--results", str(committed)]).results == committed  # asked for


# --------------------------------------------------------------------------- 14. the live display's width


LIVE = """
import sys
from exporter.progress import Reporter
name = sys.argv[1]
reporter = Reporter(enabled=True, live=True)
reporter.add_stream(name)
for _ in range(3):
    reporter.advance(name, 1000)
reporter.close()
"""


@pytest.mark.parametrize("columns", [150, 0])  # 0: a terminal that does not tell its width
def test_the_live_display_uses_the_terminals_width_on_stderr(columns: int) -> None:
    import fcntl

    name = "traderevolution/" + "x" * 60  # with its counts, a row of ~140 columns
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = clean_env()
    env.pop("COLUMNS", None)
    process = subprocess.Popen([sys.executable, "-c", LIVE, name], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    screen = read_screen(master)
    stdout = process.stdout.read() if process.stdout else b""
    assert process.wait(timeout=60) == 0
    assert stdout == b""  # the display is on stderr: stdout keeps only the summary
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode())
    rows = [row for row in re.split(r"[\r\n]+", screen) if name in row]
    assert rows, screen  # the whole stream name, not cut at 80 columns
    assert "3,000 records" in screen.rsplit(name, 1)[1]  # the last frame: on the name's row, or the next one
    assert max(len(row) for row in rows) > 80
