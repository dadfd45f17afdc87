"""The HTML report over snapshots the simulators served, its virtual clock advanced between runs.

Every number checked here is read back from the report (``data-key``/``data-exact``) and compared
with a DuckDB query over the same published files.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner

from exporter.cli import main
from exporter.report import ReportOptions, write_report
from exporter.sandbox.traderevolution import BASE_PATH, te_simulator
from exporter.sandbox.tradesync import tradesync_simulator

from .browser import Browser
from .helpers import make_job, run

START = datetime(2025, 1, 31, 12, tzinfo=UTC)
DAY = 86_400
DATES = ["2025-02-01", "2025-02-02", "2025-02-03"]


class Numbers(HTMLParser):
    """``data-key`` -> (``data-exact`` or None, the text shown)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, tuple[str | None, str]] = {}
        self._open: list[tuple[str, str | None]] = []
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if "data-key" in values:
            self._open.append((values["data-key"] or "", values.get("data-exact")))
            self._text = []

    def handle_data(self, data: str) -> None:
        self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag in ("td", "span", "p"):
            key, exact = self._open.pop()
            self.found[key] = (exact, "".join(self._text).strip())


def numbers(page: Path) -> dict[str, tuple[str | None, str]]:
    parser = Numbers()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.found


def advance(url: str, seconds: int) -> None:
    request = urllib.request.Request(f"{url}/_sim/advance?seconds={seconds}", method="POST")
    with urllib.request.urlopen(request) as answer:
        assert answer.status == 200


def job(day: int) -> Any:
    te = {"rps": 0, "concurrency": 4, "since": (START - timedelta(days=60)).isoformat(),
          "until": (START + timedelta(days=day)).isoformat(), "window_days": 30, "operations_window_days": 120}
    return make_job({"tradesync": {"rps": 0, "concurrency": 4}, "traderevolution": te}, name="nightly")


def env(tradesync: str, traderevolution: str) -> dict[str, str]:
    return {"TRADESYNC_API_KEY": "sim-key", "TRADESYNC_API_SECRET": "sim-secret", "TRADESYNC_BASE_URL": tradesync,
            "TRADEREVOLUTION_BASE_URL": traderevolution, "TRADEREVOLUTION_LOGIN": "sim-user",
            "TRADEREVOLUTION_PASSWORD": "sim-pass"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three nightly snapshots of both sources and a report after each.

    Days 1 and 2: one Tradesync simulator whose clock moves a day between runs (new accounts open
    every hour, trades move balances). Day 3: a simulator with fewer accounts (some disappear),
    whose accounts also serve a value the schema rejects (``open_trades`` with decimals).
    """
    root = tmp_path_factory.mktemp("report")
    output = root / "out"
    reports: dict[str, Path] = {"output": output}
    sim = dict(trades_per_account=3, rate_limit_rps=0, new_accounts_per_hour=1)
    with tradesync_simulator(accounts=40, **sim) as (ts_url, _), \
            te_simulator(users=8, positions_per_account=2, rate_limit_rps=0) as (te_url, _):
        te_root = te_url.removesuffix(BASE_PATH)
        for day in (0, 1):
            run(job(day), output, env(ts_url, te_url), now=START + timedelta(days=day + 1))
            reports[f"day{day + 1}"] = Path(write_report(str(output), root / f"day{day + 1}.html"))
            advance(ts_url, DAY)
            advance(te_root, DAY)
        with tradesync_simulator(accounts=33, drift="int_gets_decimals", **sim) as (fewer_url, _):
            advance(fewer_url, 2 * DAY)
            run(job(2), output, env(fewer_url, te_url), now=START + timedelta(days=3))
    reports["day3"] = Path(write_report(str(output), root / "day3.html"))
    # the same report with ids compared in buckets of 5 (16 buckets here): memory-bounded route
    small = ReportOptions(bucket_rows=5)
    reports["day3-buckets"] = Path(write_report(str(output), root / "day3-buckets.html", small))
    return reports


def files(output: Path, source: str, dataset: str, date: str) -> str:
    return f"'{output}/{source}/{dataset}/snapshot_date={date}/*.parquet'"


def one(query: str) -> Any:
    return duckdb.sql(query).fetchall()[0][0]


def test_currency_totals_are_the_exact_sums(exported: dict[str, Path]) -> None:
    shown = numbers(exported["day3"])
    output = exported["output"]
    checked = 0
    for source in ("tradesync", "traderevolution"):
        for date in DATES:
            for dataset, metric in (("balances", "balance"), ("balances", "credit"), ("equity", "equity")):
                where = files(output, source, dataset, date)
                rows = duckdb.sql(f"SELECT currency, sum({metric}) FROM read_parquet({where}) GROUP BY ALL").fetchall()
                assert rows
                for currency, total in rows:
                    exact, text = shown[f"{source}/{date}/{currency}/{metric}"]
                    assert Decimal(exact) == total
                    assert text == f"{total:,.2f}"
                    checked += 1
    assert checked >= 2 * 3 * 3 * 2  # both sources, three dates, three sums, at least two currencies


def test_rows_per_snapshot_match_the_files(exported: dict[str, Path]) -> None:
    shown = numbers(exported["day3"])
    output = exported["output"]
    for source, datasets in (("tradesync", ("accounts", "balances", "equity", "trades")),
                             ("traderevolution", ("accounts", "balances", "equity", "account_operations", "trades"))):
        for dataset in datasets:
            for date in DATES:
                count = one(f"SELECT count(*) FROM read_parquet({files(output, source, dataset, date)})")
                assert shown[f"{source}/{date}/{dataset}/rows"][1] == f"{count:,}"


def expected_diff(output: Path, source: str, dataset: str, key: str, previous: str, latest: str) -> tuple[int, int]:
    new, old = files(output, source, dataset, latest), files(output, source, dataset, previous)

    def only_in(a: str, b: str) -> int:
        return one(f"SELECT count(*) FROM (SELECT {key} FROM read_parquet({a}) "
                   f"EXCEPT SELECT {key} FROM read_parquet({b}))")

    return only_in(new, old), only_in(old, new)


@pytest.mark.parametrize("report", ["day3", "day3-buckets"])
def test_accounts_added_and_removed(exported: dict[str, Path], report: str) -> None:
    output = exported["output"]
    for page, previous, latest in (("day2", DATES[0], DATES[1]), (report, DATES[1], DATES[2])):
        shown = numbers(exported[page])
        for source in ("tradesync", "traderevolution"):
            added, removed = expected_diff(output, source, "accounts", "id", previous, latest)
            assert shown[f"{source}/accounts/added"][1] == f"{added:,}"
            assert shown[f"{source}/accounts/removed"][1] == f"{removed:,}"
    # the scenario does what it is meant to: the clock opened accounts, the smaller simulator lost some
    assert expected_diff(output, "tradesync", "accounts", "id", DATES[0], DATES[1])[0] > 0
    assert expected_diff(output, "tradesync", "accounts", "id", DATES[1], DATES[2])[1] > 0


@pytest.mark.parametrize("report", ["day3", "day3-buckets"])
def test_largest_changes(exported: dict[str, Path], report: str) -> None:
    shown = numbers(exported[report])
    output = exported["output"]
    for source in ("tradesync", "traderevolution"):
        for dataset, metric in (("balances", "balance"), ("equity", "equity")):
            changes = duckdb.sql(
                f"SELECT n.account_id, n.{metric} - o.{metric} AS change FROM read_parquet("
                f"{files(output, source, dataset, DATES[2])}) n JOIN read_parquet("
                f"{files(output, source, dataset, DATES[1])}) o USING (account_id) WHERE change <> 0 "
                "ORDER BY abs(change) DESC, account_id LIMIT 20").fetchall()
            assert changes, f"{source} {metric}: the clock moved, some {metric} must change"
            for rank, (_, change) in enumerate(changes, 1):
                assert Decimal(shown[f"{source}/{metric}/change/{rank}"][0]) == change
            assert f"{source}/{metric}/change/{len(changes) + 1}" not in shown


def test_equity_histogram_counts_every_account(exported: dict[str, Path]) -> None:
    shown = numbers(exported["day3"])
    output = exported["output"]
    for source in ("tradesync", "traderevolution"):
        counts = duckdb.sql(f"SELECT currency, count(equity) FROM read_parquet("
                            f"{files(output, source, 'equity', DATES[2])}) GROUP BY ALL").fetchall()
        by_size = sorted(counts, key=lambda c: (-c[1], c[0]))[:6]
        for currency, count in by_size:
            assert shown[f"{source}/{currency}/equity-accounts"][1] == f"{count:,}"


def test_one_snapshot_has_nothing_to_compare(exported: dict[str, Path]) -> None:
    shown = numbers(exported["day1"])
    for source in ("tradesync", "traderevolution"):
        assert "nothing to compare yet" in shown[f"{source}/compare"][1]
        assert f"{source}/accounts/added" not in shown
        assert f"{source}/{DATES[0]}/accounts/rows" in shown


def test_rejects_link_to_the_rejected_records(exported: dict[str, Path]) -> None:
    page = exported["day3"]
    shown = numbers(page)
    output = exported["output"]
    manifest = json.loads((output / "tradesync/equity" / f"snapshot_date={DATES[2]}" / "_manifest.json").read_text())
    rejected = manifest["datasets"]["equity"]["rejected_rows"]
    assert rejected > 0
    assert shown[f"tradesync/{DATES[2]}/equity/rejected"][1] == f"{rejected:,}"
    href = f"out/tradesync/equity/snapshot_date={DATES[2]}/_rejects.jsonl"
    assert f'href="{href}"' in page.read_text()
    lines = (page.parent / href).read_text().splitlines()
    assert len(lines) == rejected
    assert all("open_trades" in json.loads(line)["problems"] for line in lines)


def test_command_line_report(exported: dict[str, Path], tmp_path: Path) -> None:
    output = exported["output"]
    cli = CliRunner()
    target = tmp_path / "ts.html"
    result = cli.invoke(main, ["report", str(output), "-o", str(target), "--source", "tradesync", "--days", "2"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(target)
    shown = numbers(target)
    assert {k.split("/")[0] for k in shown} == {"tradesync"}
    assert f"tradesync/{DATES[0]}/accounts/rows" not in shown  # two snapshots only
    assert f"tradesync/{DATES[1]}/accounts/rows" in shown

    default = cli.invoke(main, ["report", str(output)])
    assert default.exit_code == 0 and default.stdout.strip() == str(output / "report.html")
    assert (output / "report.html").exists()

    unknown = cli.invoke(main, ["report", str(output), "--source", "nope"])
    assert unknown.exit_code == 2
    assert unknown.stderr.strip().splitlines() == [
        f"error: --source nope: no snapshot of it under {output} (found: traderevolution, tradesync)"]
    empty = cli.invoke(main, ["report", str(tmp_path / "nothing")])
    assert empty.exit_code == 1 and len(empty.stderr.strip().splitlines()) == 1
    assert empty.stderr.startswith("error: no published snapshot under")


PROBE = """(() => {
  const charts = [...document.querySelectorAll('svg.chart')];
  const drawn = charts.filter(c => {
    const box = c.getBoundingClientRect();
    return box.width > 100 && box.height > 50 && c.querySelectorAll('polyline, circle, rect').length > 0;
  });
  return {charts: charts.length, drawn: drawn.length,
          sources: [...document.querySelectorAll('section.source')].map(s => s.dataset.source)};
})()"""

CONTROL = """<!doctype html><html><head><title>control</title></head><body>
<img src="http://127.0.0.1:9/pixel.png"><script>console.error("control error")</script></body></html>"""


def test_the_report_renders_in_a_real_browser(exported: dict[str, Path], tmp_path: Path) -> None:
    page = exported["day3"]
    control = tmp_path / "control.html"
    control.write_text(CONTROL)

    async def look() -> tuple[Any, Any]:
        async with Browser(tmp_path / "profile") as browser:
            # the harness sees what it must catch: a network load and a console error
            seen = await browser.visit(control.as_uri(), "document.title")
            return seen, await browser.visit(page.as_uri(), PROBE)

    control_visit, visit = asyncio.run(look())
    assert "http://127.0.0.1:9/pixel.png" in control_visit.requests
    assert any("control error" in e for e in control_visit.errors)

    in_file = page.read_text().count('<svg class="chart"')
    assert in_file >= 2 * (4 + 3 + 1)  # per source: rows charts, currency charts, the run chart at least
    assert visit.value == {"charts": in_file, "drawn": in_file, "sources": ["traderevolution", "tradesync"]}
    assert visit.requests and all(url == page.as_uri() for url in visit.requests), visit.requests
    assert visit.errors == []


def test_demo_ends_with_the_report(tmp_path: Path) -> None:
    output = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--accounts", "40", "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == f"Report: {output / 'report.html'}"
    shown = numbers(output / "report.html")
    for source in ("tradesync", "traderevolution"):
        assert f"{source}/compare" in shown  # one snapshot: nothing to compare yet


def test_the_report_over_s3_shows_what_it_shows_over_a_folder(exported: dict[str, Path], tmp_path: Path) -> None:
    """The same published files in a bucket (moto on loopback): every number of the report is the
    same, and the report is written into the bucket beside them."""
    from .s3_helpers import s3_server

    output = exported["output"]
    with s3_server() as s3:
        client = s3.client()
        for path in output.rglob("*"):
            if path.is_file() and path.name != "report.html":
                client.upload_file(str(path), s3.bucket, f"nightly/{path.relative_to(output).as_posix()}")
        where = write_report(s3.url("nightly"), env=s3.env())
        assert where == s3.url("nightly") + "/report.html"
        page = tmp_path / "report.html"
        page.write_bytes(client.get_object(Bucket=s3.bucket, Key="nightly/report.html")["Body"].read())
    local = numbers(exported["day3"])
    remote = numbers(page)
    assert len(local) > 50 and remote == local
