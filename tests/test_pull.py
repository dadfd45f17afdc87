"""``exporter pull`` against the simulators over loopback HTTP: every format, exact values, --limit,
--param, errors and exit codes, interrupted pulls, the README's quick pulls."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from exporter.cli import main
from exporter.sandbox.traderevolution import TraderEvolutionSimConfig, te_simulator
from exporter.sandbox.tradesync import TradesyncSimConfig, tradesync_simulator

from .chaos_helpers import error_lines, wait_for

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SECRET = "sim-secret"
PREFIXES = ("TRADESYNC_", "TRADEREVOLUTION_", "EU_TS_")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIXES)}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def ts_env(url: str, secret: str = SECRET) -> dict[str, str]:
    return {"TRADESYNC_BASE_URL": url, "TRADESYNC_API_KEY": "sim-key", "TRADESYNC_API_SECRET": secret}


def te_env(url: str, password: str = "sim-pass") -> dict[str, str]:
    return {"TRADEREVOLUTION_BASE_URL": url, "TRADEREVOLUTION_LOGIN": "sim-user",
            "TRADEREVOLUTION_PASSWORD": password}


def pull_process(args: list[str], env: dict[str, str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    """``exporter pull ...`` in a process of its own; stdout is a pipe, as in ``| duckdb``."""
    return subprocess.run([sys.executable, "-m", "exporter", "pull", *args], env=clean_env(**env),
                          capture_output=True, timeout=120, **kwargs)


def pull_here(args: list[str], env: dict[str, str]) -> tuple[int, bytes, str]:
    """The same command in this process (faster where a test pulls many times)."""
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith(PREFIXES)}
    result = CliRunner().invoke(main, ["pull", *args], env={**unset, **env}, catch_exceptions=False)
    return result.exit_code, result.stdout_bytes, result.stderr


def served(url: str, path: str, **params: str) -> list[dict[str, Any]]:
    """Every record of a Tradesync collection as served, each number as its JSON text."""
    token = base64.b64encode(b"sim-key:" + SECRET.encode()).decode()
    records: list[dict[str, Any]] = []
    last_id = None
    while True:
        query = {"order": "asc", "limit": "1000", **params, **({"last_id": str(last_id)} if last_id else {})}
        request = urllib.request.Request(f"{url}{path}?{urllib.parse.urlencode(query)}",
                                         headers={"Authorization": f"Basic {token}"})
        with urllib.request.urlopen(request) as response:
            page = json.loads(response.read(), parse_float=str, parse_int=str)["data"]
        records += page
        if len(page) < 1000:
            return records
        last_id = page[-1]["id"]


def read_csv(data: bytes, tmp_path: Path) -> list[dict[str, str | None]]:
    """CSV as DuckDB reads it: every value as text, an empty cell null, ``""`` an empty string."""
    path = tmp_path / "pulled.csv"
    path.write_bytes(data)
    relation = duckdb.read_csv(str(path), all_varchar=True, allow_quoted_nulls=False, header=True)
    return [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]


def assert_exact_text(cell: str | None, text: str | None, where: str) -> None:
    """A value written by a pull against the served JSON text of the same value: the very text where
    the API wrote a plain decimal, the same number in its shortest plain digits where the API wrote
    an exponent or a trailing zero (``1e-05``, ``1.0``)."""
    if text is None:
        assert cell is None, where
    elif re.fullmatch(r"-?[0-9]+(\.[0-9]*[1-9])?", text) or not re.fullmatch(r"[-+0-9.eE]+", text):
        assert cell == text, where  # integers, plain decimals, strings, timestamps
    else:
        assert cell is not None and "e" not in cell.lower() and Decimal(cell) == Decimal(text), where
        assert not re.search(r"\.[0-9]*0$", cell), where


def te_job(path: Path, start: datetime) -> Path:
    """A job whose TraderEvolution source covers the simulator's 90 days, unpaced (no rate limit there)."""
    since = start.timestamp() - 90 * 86400
    path.write_text(f'[sources.traderevolution]\nrps = 0\nsince = "{datetime.fromtimestamp(since, UTC).isoformat()}"'
                    f'\nuntil = "{start.isoformat()}"\n')
    return path


@pytest.fixture(scope="module")
def tradesync() -> Any:
    config = TradesyncSimConfig(accounts=1500, trades_per_account=6, rate_limit_rps=0)
    with tradesync_simulator(config) as (url, simulator):
        yield url, simulator


# --------------------------------------------------------------------------- exact values, each format


def test_csv_on_a_pipe_equals_the_served_json_text(tradesync: Any, tmp_path: Path) -> None:
    url, _ = tradesync
    done = pull_process(["tradesync", "accounts"], ts_env(url))
    assert done.returncode == 0, done.stderr[-2000:]
    rows = read_csv(done.stdout, tmp_path)  # csv: the default when stdout is a pipe
    records = served(url, "/accounts")
    assert len(rows) == len(records) == 1500
    assert [r["id"] for r in rows] == [r["id"] for r in records]  # ascending id order
    columns = set(rows[0]) - {"snapshot_at"}
    assert "password" not in rows[0] and columns >= set(records[0]) - {"password"}
    for row, record in zip(rows, records, strict=True):
        for column in columns:  # a declared field the API did not send (legacy mt_version) is null
            assert_exact_text(row[column], record.get(column), f"{record['id']} {column}")
    assert any(r["balance"] == "99999999999.99" for r in rows)  # the float route would show ...99000549
    assert all(r["password"].encode() not in done.stdout for r in records[:50])
    assert done.stderr.decode().splitlines()[-1].startswith("1500 accounts rows of tradesync to stdout (csv, ")


def test_jsonl_money_is_exact_and_times_are_the_served_text(tradesync: Any) -> None:
    url, _ = tradesync
    code, out, err = pull_here(["tradesync", "trades", "--format", "jsonl"], ts_env(url))
    assert code == 0, err
    lines = out.decode().splitlines()
    records = served(url, "/trades")
    assert len(lines) == len(records) > 1000
    for line, record in zip(lines, records, strict=True):
        texts = json.loads(line, parse_float=str, parse_int=str)  # the numbers as written
        assert texts.keys() == record.keys()
        for key, text in record.items():
            assert_exact_text(texts[key], text, f"{record['id']} {key}")
        values = json.loads(line, parse_float=Decimal)
        assert all(isinstance(values[k], int | Decimal) for k in ("profit", "lots", "commission"))  # numbers


def test_parquet_has_the_schema_a_run_writes(tradesync: Any, tmp_path: Path) -> None:
    url, _ = tradesync
    job = tmp_path / "ts.toml"
    job.write_text('name = "ts"\n[sources.tradesync]\ndatasets = ["balances"]\n')
    ran = subprocess.run([sys.executable, "-m", "exporter", "run", str(job), "-o", str(tmp_path / "out")],
                         env=clean_env(**ts_env(url)), capture_output=True, timeout=120)
    assert ran.returncode == 0, ran.stderr[-2000:]
    code, out, err = pull_here(["tradesync", "balances", "-o", str(tmp_path / "b.parquet")], ts_env(url))
    assert code == 0 and out == b"", err  # the format from the extension; nothing on stdout
    pulled = pq.read_table(tmp_path / "b.parquet")
    published = pads.dataset(tmp_path / "out" / "tradesync" / "balances", format="parquet").to_table()
    assert pulled.schema.remove_metadata() == published.schema.remove_metadata()
    assert pulled.drop(["snapshot_at"]).to_pylist() == published.sort_by("account_id").drop(["snapshot_at"]).to_pylist()


def test_a_table_on_request_shows_every_value_whole(tradesync: Any) -> None:
    url, _ = tradesync
    code, out, err = pull_here(["tradesync", "accounts", "--format", "table", "--limit", "3",
                                "--columns", "id,currency,balance"], ts_env(url))
    assert code == 0, err
    lines = out.decode().splitlines()
    records = served(url, "/accounts")[:3]
    assert lines[0].split() == ["id", "currency", "balance"] and set(lines[1]) <= {"-", " "}
    assert [line.split() for line in lines[2:5]] == [[r["id"], r["currency"], r["balance"]] for r in records]
    assert lines[5] == "(3 rows)" and len(lines) == 6


def test_columns_choose_and_order_and_an_unknown_one_is_one_line(tradesync: Any, tmp_path: Path) -> None:
    url, _ = tradesync
    code, out, _ = pull_here(["tradesync", "equity", "--limit", "2", "--columns", "equity,account_id"], ts_env(url))
    assert code == 0 and out.decode().splitlines()[0] == "equity,account_id"
    code, out, err = pull_here(["tradesync", "equity", "--columns", "equity,nope"], ts_env(url))
    assert code == 2 and out == b"" and error_lines(err) == [
        error_lines(err)[0]] and "no column nope" in err and "free_margin" in err
    code, _, err = pull_here(["tradesync", "equity", "-o", str(tmp_path / "x.txt")], ts_env(url))
    assert code == 2 and "cannot tell the format" in err and not (tmp_path / "x.txt").exists()


# --------------------------------------------------------------------------- --limit


def test_limit_fetches_only_the_pages_it_needs(tmp_path: Path) -> None:
    config = TradesyncSimConfig(accounts=5000, trades_per_account=2, rate_limit_rps=0)
    with tradesync_simulator(config) as (url, simulator):
        ids = [a["id"] for a in simulator.expected_accounts()]
        closed = [t["id"] for t in simulator.expected_trades() if t["state"] == "closed"]
        for limit, requests in ((1, 1), (1000, 1), (2500, 3)):
            before = simulator.state()["requests_total"]
            code, out, err = pull_here(["tradesync", "accounts", "--limit", str(limit), "--columns", "id"],
                                       ts_env(url))
            assert code == 0, err
            assert simulator.state()["requests_total"] - before == requests, limit
            assert [int(v) for v in out.decode().split()[1:]] == ids[:limit]
        before = simulator.state()["requests_total"]
        code, out, err = pull_here(["tradesync", "trades", "--param", "state=closed", "--limit", "1500",
                                    "--columns", "id,state"], ts_env(url))
        assert code == 0 and simulator.state()["requests_total"] - before == 2, err
        rows = read_csv(out, tmp_path)
        assert [int(r["id"]) for r in rows] == closed[:1500] and {r["state"] for r in rows} == {"closed"}
    small = TradesyncSimConfig(accounts=30, trades_per_account=0, rate_limit_rps=0)
    with tradesync_simulator(small) as (url, simulator):
        code, out, _ = pull_here(["tradesync", "accounts", "--limit", "100", "--columns", "id"], ts_env(url))
        assert code == 0 and len(out.decode().split()) == 31  # all 30: a short page ends it
        assert simulator.state()["requests_total"] == 1


def test_traderevolution_limit_stops_at_the_first_window_that_fills_it(tmp_path: Path) -> None:
    start = datetime(2025, 1, 31, 12, tzinfo=UTC)
    job = te_job(tmp_path / "te.toml", start)
    config = TraderEvolutionSimConfig(users=20, positions_per_account=30, rate_limit_rps=0, sim_start=start)
    with te_simulator(config) as (url, simulator):
        source = ["traderevolution", "trades", "--job", str(job), "--columns", "tradeid,time,profit"]
        code, full, err = pull_here(source, te_env(url))
        assert code == 0, err
        rows = read_csv(full, tmp_path)
        first_window = datetime.fromtimestamp(start.timestamp() - 83 * 86400, UTC).isoformat().replace("+00:00", "Z")
        assert sum(r["time"] < first_window for r in rows) > 25 and len(rows) > 500  # the test's premise
        before = simulator.state()["requests_total"]
        code, head, err = pull_here([*source, "--limit", "25"], te_env(url))
        assert code == 0, err
        # login, the report's id by name, then the first 7-day window: it holds more than 25 fills
        assert simulator.state()["requests_total"] - before == 3
        assert head.decode().splitlines() == full.decode().splitlines()[:26]
        ids = [int(r["tradeid"]) for r in rows]
        assert ids == sorted(ids)
        before = simulator.state()["requests_total"]
        code, out, _ = pull_here(["traderevolution", "accounts", "--job", str(job), "--limit", "4", "--columns", "id"],
                                 te_env(url))
        assert code == 0 and simulator.state()["requests_total"] - before == 2  # login, one page of 4
        assert [int(v) for v in out.decode().split()[1:]] == [a["id"] for a in simulator.expected_accounts()][:4]


# --------------------------------------------------------------------------- --param


def test_params_pass_the_apis_filters_through(tradesync: Any, tmp_path: Path) -> None:
    url, simulator = tradesync
    trades = list(simulator.expected_trades())
    accounts = sorted({t["account_id"] for t in trades if t["state"] == "open"})[3:6]
    wanted = [t["id"] for t in trades if t["account_id"] in accounts and t["state"] == "open"]
    code, out, err = pull_here(["tradesync", "trades", "--param", f"account_ids={','.join(map(str, accounts))}",
                                "--param", "state=open", "--columns", "id,account_id,state"], ts_env(url))
    assert code == 0, err
    rows = read_csv(out, tmp_path)
    assert [int(r["id"]) for r in rows] == wanted and len(wanted) < sum(t["state"] == "open" for t in trades)
    assert {int(r["account_id"]) for r in rows} <= set(accounts) and {r["state"] for r in rows} == {"open"}


def test_traderevolution_params_pass_through(tmp_path: Path) -> None:
    start = datetime(2025, 1, 31, 12, tzinfo=UTC)
    job = te_job(tmp_path / "te.toml", start)
    config = TraderEvolutionSimConfig(users=8, positions_per_account=5, rate_limit_rps=0, sim_start=start)
    with te_simulator(config) as (url, simulator):
        account = simulator.expected_accounts()[2]["id"]
        code, out, err = pull_here(["traderevolution", "balances", "--job", str(job), "--param", f"accountId={account}",
                                    "--columns", "account_id,source"], te_env(url))
        assert code == 0 and out.decode().splitlines() == ["account_id,source", f"{account},traderevolution"], err
        deposits = [o["id"] for o in simulator.expected_account_operations()
                    if o["accountId"] == account and o["operationTypeId"] == 2]
        before = simulator.state()["requests_total"]
        code, out, err = pull_here(["traderevolution", "account_operations", "--job", str(job), "--param",
                                    f"accountId={account}", "--param", "operationTypeId=2", "--columns", "id"],
                                   te_env(url))
        assert code == 0, err
        assert [int(v) for v in out.decode().split()[1:]] == deposits and deposits
        # one account's window only, no listing of every account first: login + one request
        assert simulator.state()["requests_total"] - before == 2


def test_a_filter_the_api_refuses_is_its_message_and_exit_2(tradesync: Any) -> None:
    url, simulator = tradesync
    done = pull_process(["tradesync", "trades", "--param", "state=bogus"], ts_env(url))
    assert done.returncode == 2 and done.stdout == b""
    (line,) = error_lines(done.stderr.decode())
    assert "sources.tradesync" in line and "HTTP 422" in line and "VALIDATION_FAIL" in line
    assert "The selected state is invalid." in line
    before = simulator.state()["requests_total"]
    code, out, err = pull_here(["tradesync", "trades", "--param", "colour=red"], ts_env(url))
    assert code == 2 and out == b"" and simulator.state()["requests_total"] == before  # refused before asking
    assert "--param colour: not a filter of tradesync trades (it takes: account_id, account_ids, state, ids)" in err
    code, _, err = pull_here(["tradesync", "accounts", "--param", "limit=5"], ts_env(url))
    assert code == 2 and "use --limit" in err


def test_traderevolution_refusing_a_filter_is_exit_2_too(tmp_path: Path) -> None:
    start = datetime(2025, 1, 31, 12, tzinfo=UTC)
    job = te_job(tmp_path / "te.toml", start)
    with te_simulator(TraderEvolutionSimConfig(users=3, rate_limit_rps=0, sim_start=start)) as (url, _):
        code, out, err = pull_here(["traderevolution", "balances", "--job", str(job), "--param", "accountId=abc"],
                                   te_env(url))
    assert code == 2 and out == b"" and "HTTP 400" in err and "sources.traderevolution" in err


# --------------------------------------------------------------------------- credentials, interruption


def test_wrong_credentials_exit_3_with_nothing_on_stdout_and_no_secret(tradesync: Any) -> None:
    url, _ = tradesync
    secret = "wrong-secret-Zq81"
    done = pull_process(["tradesync", "accounts"], ts_env(url, secret=secret))
    assert done.returncode == 3 and done.stdout == b""
    (line,) = error_lines(done.stderr.decode())
    assert "sources.tradesync" in line and "TRADESYNC_API_KEY" in line and "NOT_AUTHORISED" in line
    assert secret.encode() not in done.stderr
    with te_simulator(TraderEvolutionSimConfig(users=2, rate_limit_rps=0)) as (te_url, _):
        done = pull_process(["traderevolution", "accounts"], te_env(te_url, password="not-it-77"))
    assert done.returncode == 3 and done.stdout == b"" and b"not-it-77" not in done.stderr
    assert "TRADEREVOLUTION_PASSWORD" in error_lines(done.stderr.decode())[0]


def test_ctrl_c_leaves_no_file_under_the_requested_name(tmp_path: Path) -> None:
    target = tmp_path / "accounts.csv"
    target.write_text("the previous pull\n")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    config = TradesyncSimConfig(accounts=3000, trades_per_account=0, rate_limit_rps=0, latency_ms=300)
    with tradesync_simulator(config) as (url, simulator):
        process = subprocess.Popen(
            [sys.executable, "-m", "exporter", "pull", "tradesync", "accounts", "-o", str(target)],
            env=clean_env(**ts_env(url), TMPDIR=str(scratch)), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for(lambda: simulator.state()["requests_total"] >= 3, timeout=60, what="the first pages",
                 process=process)  # type: ignore[arg-type]
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err[-2000:]
    assert out == b"" and error_lines(err.decode()) == ["error: interrupted: nothing was written"]
    assert target.read_text() == "the previous pull\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["accounts.csv", "tmp"]  # no partial file beside it
    assert list(scratch.iterdir()) == []  # nor the run's temporary folder


def test_a_file_is_replaced_whole(tradesync: Any, tmp_path: Path) -> None:
    url, _ = tradesync
    target = tmp_path / "accounts.jsonl"
    target.write_text("old\n")
    code, out, err = pull_here(["tradesync", "accounts", "--limit", "10", "-o", str(target)], ts_env(url))
    assert code == 0 and out == b"" and "to " + str(target) in err
    assert [json.loads(line)["id"] for line in target.read_text().splitlines()] == \
        [int(r["id"]) for r in served(url, "/accounts")[:10]]
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as any new file, not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["accounts.jsonl"]


# --------------------------------------------------------------------------- sources, sandbox, the README


def test_a_named_source_of_a_job_reads_its_own_variables(tradesync: Any, tmp_path: Path) -> None:
    url, _ = tradesync
    job = tmp_path / "tenants.toml"
    job.write_text('[sources.eu]\nkind = "tradesync"\nenv_prefix = "EU_TS"\n')
    env = {"EU_TS_BASE_URL": url, "EU_TS_API_KEY": "sim-key", "EU_TS_API_SECRET": SECRET}
    code, out, err = pull_here(["eu", "balances", "--job", str(job), "--limit", "2", "--columns", "source"], env)
    assert code == 0 and out.decode().split() == ["source", "eu", "eu"], err
    code, out, err = pull_here(["tradesync", "balances", "--job", str(job)], env)
    assert code == 2 and f"{job}: no [sources.tradesync] in this job (it has: eu)" in err
    code, out, err = pull_here(["eu", "balances", "--job", str(job)], {})
    assert code == 3 and "sources.eu: set EU_TS_API_KEY and EU_TS_API_SECRET" in err


def test_sandbox_pulls_need_no_credentials() -> None:
    code, out, err = pull_here(["traderevolution", "equity", "--sandbox", "--limit", "3",
                                "--columns", "account_id,currency,equity"], {})
    assert code == 0, err
    lines = out.decode().splitlines()
    assert lines[0] == "account_id,currency,equity" and len(lines) == 4


def test_the_readmes_quick_pulls_run_as_written(tmp_path: Path) -> None:
    section = README.split("## Quick pulls", 1)[1].split("\n## ", 1)[0]
    commands = [line.strip() for line in section.splitlines() if line.strip().startswith("exporter pull")]
    sandboxed = [c for c in commands if "--sandbox" in c]
    assert len(sandboxed) >= 3
    for command in sandboxed:
        words = command.split("#", 1)[0].split()
        pipe = words.index("|") if "|" in words else len(words)
        done = subprocess.run([sys.executable, "-m", "exporter", *words[1:pipe]], env=clean_env(),
                              capture_output=True, timeout=120, cwd=tmp_path)
        assert done.returncode == 0, (command, done.stderr[-2000:])
        produced = done.stdout or b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
        assert produced, command


def test_the_readmes_filter_table_is_what_each_dataset_takes() -> None:
    from exporter.sources import registry

    section = README.split("## Quick pulls", 1)[1].split("\n## ", 1)[0]
    documented: dict[tuple[str, str], list[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in registry():
            for dataset in cells[1].split(", "):
                # each filter is the first backquoted word of its comma-separated item
                documented[(cells[0], dataset)] = re.findall(r"(?:^|, )`([A-Za-z_]+)`", cells[2])
    expected = {(kind, dataset): list(cls.filters(dataset))
                for kind, cls in registry().items() for dataset in cls.DATASETS}
    assert documented == expected
