"""Command line: thin commands that parse options, call one library function, and map errors
to exit codes in one place (0 ok, 1 run failed, 2 usage/job file, 3 auth, 4 another run holds the
lease, 130 interrupted)."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import shlex
import signal
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from . import __version__
from .errors import ExporterError, JobFileError
from .formats import FORMATS
from .http import settled_summary
from .jobs import JobSpec, load_job, parse_job
from .metrics import RunOutcome, write_metrics
from .progress import Reporter
from .runner import Run, RunOptions, RunResult
from .sources import registry
from .summary import summary_json

T = TypeVar("T")
log = logging.getLogger("exporter")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
                **getattr(record, "fields", {}),  # a progress line's numbers (percent, eta_seconds, ...)
            }
        )


# the format of stderr lines; the final error line follows it too (a JSON consumer reads every line)
_stderr_format = "text"


def use_format(fmt: str) -> None:
    global _stderr_format
    _stderr_format = fmt


def setup_logging(fmt: str, verbose: bool = False) -> None:
    use_format(fmt)
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("aiohttp").setLevel(logging.WARNING)


def fail(message: str, code: int) -> None:
    """One clear line on stderr, then exit with ``code`` (never a traceback for expected errors).
    With ``--log-format json`` that line is a JSON object like every log line."""
    if _stderr_format == "json":
        line = json.dumps({
            "ts": datetime.now().astimezone().strftime("%Y-%m-%dT%H:%M:%S%z"),
            "level": "error",
            "logger": "exporter",
            "message": message,
            "exit_code": code,
        })
    else:
        line = f"error: {message}"
    click.echo(line, err=True)
    sys.exit(code)


def run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine and map every failure to its exit code."""
    try:
        return asyncio.run(factory())
    except ExporterError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            fail(f"disk full while writing{_where(exc)}; free some space and rerun (the checkpoint is kept)", 1)
        fail(f"{exc.strerror or exc}{_where(exc)}", 1)
    raise AssertionError("unreachable")


def _where(exc: OSError) -> str:
    return f" ({exc.filename})" if exc.filename else ""


@click.group()
@click.version_option(__version__, prog_name="exporter")
def main() -> None:
    """brokerexport: bulk export of broker back-office APIs to Parquet snapshots."""


@main.command()
@click.argument("job_file", type=click.Path(path_type=Path))
@click.option(
    "--output", "-o", help="Output folder or s3://BUCKET/PREFIX (default: the job's, else ./output)."
)
@click.option("--dataset", "datasets", multiple=True, help="Only these datasets (repeatable).")
@click.option("--concurrency", type=click.IntRange(min=1), help="Requests in flight at most, per source.")
@click.option("--rps", type=click.FloatRange(min=0), help="Requests per second per source (0 = no limit).")
@click.option("--log-format", type=click.Choice(["text", "json"]), help="Log line format on stderr.")
@click.option("--format", "output_format", type=click.Choice(["parquet", "delta", "iceberg"]),
              help="Parquet folders (default), or one Delta Lake / Apache Iceberg table per dataset.")
@click.option("--resume", is_flag=True, help="Continue the interrupted run (fail if none).")
@click.option("--fresh", is_flag=True, help="Discard any interrupted run and start over.")
@click.option("--verbose", "-v", is_flag=True, help="Debug logging.")
@click.option("--workers", type=click.IntRange(min=1),
              help="Run the units on a local Dask cluster of N worker processes (pip install brokerexport[dask]).")
@click.option("--cluster", "cluster_address", metavar="tcp://HOST:PORT",
              help="Run the units on this Dask scheduler (default: the job's 'cluster' key).")
@click.option("--shared-output", is_flag=True,
              help="With --cluster: the local output folder is mounted at the same path on every worker.")
@click.option("--metrics-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Prometheus text file written when the run ends (node_exporter's textfile collector).")
@click.option("--summary", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="The end-of-run summary on stdout: text, or one JSON object.")
@click.pass_context
def run(
    ctx: click.Context,
    job_file: Path,
    output: str | None,
    datasets: tuple[str, ...],
    concurrency: int | None,
    rps: float | None,
    log_format: str | None,
    output_format: str | None,
    resume: bool,
    fresh: bool,
    verbose: bool,
    workers: int | None,
    cluster_address: str | None,
    shared_output: bool,
    metrics_file: Path | None,
    summary: str,
) -> None:
    """Run JOB_FILE. By default an interrupted run of the same job is resumed."""
    if log_format:
        use_format(log_format)  # before the job file is read: its errors follow the flag too
    if resume and fresh:
        fail("--resume and --fresh exclude each other: --resume continues the interrupted run, "
             "--fresh discards it", 2)
    try:
        job = load_job(job_file, registry()).with_overrides(
            datasets=datasets, concurrency=concurrency, rps=rps, log_format=log_format, output_format=output_format
        )
    except JobFileError as exc:
        fail(str(exc), exc.exit_code)
    if workers and cluster_address:
        fail("--workers and --cluster exclude each other: --workers starts a local cluster, --cluster uses "
             "an existing scheduler", 2)
    setup_logging(job.log_format, verbose)
    scale = scale_out(workers, cluster_address if workers is None else None, job.cluster if workers is None else None,
                      shared_output)
    out = output or job.output or "output"
    mode = "require" if resume else "fresh" if fresh else "auto"
    metrics = metrics_file or (Path(job.metrics_file) if job.metrics_file else None)
    if metrics is not None and not metrics.resolve().parent.is_dir():
        fail(f"metrics file {metrics}: the folder {metrics.resolve().parent} does not exist", 2)
    outcome = RunOutcome(job.name)
    try:
        outcome.result = execute(job, out, mode, job.log_format, on_run=outcome.watch,
                                 resume_hint=shlex.join([*given_command(ctx), "--resume"]), scale=scale)
    finally:  # success or failure (fail() exits through here too)
        if metrics is not None:
            record_metrics(metrics, outcome)
    if summary == "json":
        click.echo(json.dumps(summary_json(outcome.result), default=str))
    else:
        print_summary(outcome.result)


def record_metrics(path: Path, outcome: RunOutcome) -> None:
    try:
        write_metrics(path, outcome)
    except OSError as exc:
        message = f"cannot write the metrics file {path}: {exc.strerror or exc}"
        if outcome.result is None:
            click.echo(f"error: {message}", err=True)  # the run's own error goes on after this one
        else:
            fail(message + " (the snapshot was published)", 1)


def given_command(ctx: click.Context) -> list[str]:
    """This command with every argument and option it was given on the command line, except
    ``--resume``/``--fresh``: the output, the datasets and the rest decide which checkpoint a
    run finds, so a resume hint that dropped one would not find this run's."""
    words = ["exporter", ctx.info_name or ""]
    for param in ctx.command.params:
        name = param.name or ""
        value = ctx.params.get(name)
        if name in ("resume", "fresh") or value is None:
            continue
        if ctx.get_parameter_source(name) not in (
            click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT
        ):
            continue
        if isinstance(param, click.Argument):
            words.append(str(value))
            continue
        flag = max(param.opts, key=len)
        if getattr(param, "is_flag", False):
            if value:
                words.append(flag)
            continue
        for item in value if getattr(param, "multiple", False) else (value,):
            words += [flag, str(item)]
    return words


def scale_out(workers: int | None, address: str | None, job_address: str | None, shared: bool) -> Any:
    """The cluster a run's units go to, or None: one process, and Dask is never imported."""
    if not workers and not address and not job_address:
        return None
    try:
        import distributed  # noqa: F401
    except ImportError:
        fail("--workers and --cluster need Dask: pip install 'brokerexport[dask]'", 2)
    from .cluster import ClusterOptions

    return ClusterOptions(workers=workers, address=address or job_address, shared_output=shared)


def execute(job: JobSpec, output: str | Path, resume: str, log_format: str,
            on_run: Callable[[Run], None] | None = None, resume_hint: str = "", scale: Any = None) -> RunResult:
    live = sys.stderr.isatty() and log_format == "text"
    reporter = Reporter(enabled=True, live=live)
    options = RunOptions(output=output, resume=resume, reporter=reporter, resume_hint=resume_hint)

    async def go() -> RunResult:
        if scale is None:
            runner = Run(job, options)
        else:
            from .cluster import ClusterRun

            runner = ClusterRun(job, options, scale)
        if on_run is not None:
            on_run(runner)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, runner.request_stop)
        try:
            return await runner.execute()
        finally:
            reporter.close()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    return run_async(go)


def print_summary(result: RunResult) -> None:
    lines = [
        f"run {result.run_id} of job {result.job}: snapshot {result.snapshot_date} published "
        f"in {result.seconds:.1f}s" + (f" (resumed {result.resumed}x)" if result.resumed else "")
        + (" (its interrupted commit was completed)" if result.recovered else "")
    ]
    width = max((len(f"{d.source}/{d.dataset}") for d in result.datasets), default=0)
    for d in result.datasets:
        extra = []
        if d.rejected_rows:
            extra.append(f"{d.rejected_rows} rejected")
        if d.unknown_fields:
            extra.append("new fields: " + ", ".join(sorted(d.unknown_fields)))
        if d.table:
            extra.append(f"{d.table['format']} " + (f"version {d.table['version']}" if "version" in d.table
                                                     else f"snapshot {d.table['snapshot_id']}"))
        note = f"  ({'; '.join(extra)})" if extra else ""
        lines.append(
            f"  {d.source + '/' + d.dataset:<{width}} {d.rows:>12,} rows {len(d.files):>4} files "
            f"{d.bytes / 1e6:>9.1f} MB  {d.path}{note}"
        )
    for source, stats in result.requests.items():
        lines.append(
            f"  {source}: {stats['requests']:,} requests, {stats['retries']:,} retries, {stats['http_429']:,} x 429"
        )
        if settled := settled_summary(stats):
            lines.append(f"    {settled}")
    click.echo("\n".join(lines))


DEMO_ACCOUNTS = 2000


def demo_job(accounts: int) -> JobSpec:
    raw = {
        "name": "demo",
        "sources": {
            "tradesync": {
                "concurrency": 8,
                # every dataset, balance history too (one request per account: a fan-out)
                "datasets": ["accounts", "balances", "equity", "trades", "balance_history"],
                "sandbox": {"accounts": accounts, "trades_per_account": 20, "rate_limit_rps": 0},
            },
            "traderevolution": {
                "concurrency": 8,
                "rps": 10_000,  # an unlimited simulator: rps = 0 would probe up from 1.6/s
                "sandbox": {"users": max(1, accounts // 40), "positions_per_account": 20, "rate_limit_rps": 0},
            },
        },
    }
    return parse_job(raw, Path("<demo>"), registry())


@main.command()
@click.option("--accounts", type=click.IntRange(min=1), default=DEMO_ACCOUNTS, show_default=True)
@click.option("--output", "-o", type=click.Path(path_type=Path), default=Path("output"), show_default=True)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Log line format on stderr.")
@click.pass_context
def demo(ctx: click.Context, accounts: int, output: Path, log_format: str) -> None:
    """Export every dataset from the built-in simulators (no credentials needed)."""
    setup_logging(log_format)
    # the demo always starts over: rerunning the same command is how to continue
    result = execute(demo_job(accounts), output, "fresh", log_format, resume_hint=shlex.join(given_command(ctx)))
    print_summary(result)
    click.echo(f"Query it: {query_hint(output)}")
    click.echo(f"Report: {make_report(str(output), None, (), 30)}")


@main.command()
@click.argument("output")
@click.option("--report-file", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report here (default: OUTPUT/report.html).")
@click.option("--source", "sources", multiple=True, help="Only this source (repeatable; default: every one).")
@click.option("--days", type=click.IntRange(min=1), default=30, show_default=True,
              help="The last N snapshots of each source.")
def report(output: str, report_file: Path | None, sources: tuple[str, ...], days: int) -> None:
    """An HTML report of what the runs published under OUTPUT (a folder or s3://BUCKET/PREFIX)."""
    setup_logging("text")
    click.echo(make_report(output, report_file, sources, days))


def make_report(output: str, report_file: Path | None, sources: tuple[str, ...], days: int) -> str:
    """Write the report; returns where it went. Errors exit like a run's."""
    from .report import ReportOptions, write_report

    try:
        return write_report(output, report_file, ReportOptions(days=days, sources=sources))
    except ExporterError as exc:
        fail(str(exc), exc.exit_code)
    except OSError as exc:
        fail(f"cannot write the report: {exc.strerror or exc}{_where(exc)}", 1)
    raise AssertionError("unreachable")


def query_hint(output: Path) -> str:
    """A command that queries the demo's balances with what the install provides: this Python and
    the ``duckdb`` package (a dependency; the ``duckdb`` program is not). Both sources in one
    table: their balances differ in columns, ``union_by_name`` lines them up."""
    pattern = json.dumps(f"{output}/*/balances/**/*.parquet")  # a valid Python string literal
    code = (
        f"import duckdb; duckdb.read_parquet({pattern}, hive_partitioning=True, union_by_name=True)"
        '.aggregate("source, currency, count(*) AS accounts, sum(balance) AS balance")'
        '.order("source, currency").show()'
    )
    return shlex.join([sys.executable, "-c", code])


@main.command()
@click.argument("source")
@click.argument("dataset")
@click.option("--job", "job_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Take SOURCE from this job file: its name there, options, env_prefix and sandbox.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="An API filter, passed through (repeatable): state=open, account_ids=1,2,3.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N",
              help="The first N records in ascending id order (fetching only the pages needed).")
@click.option("--columns", metavar="A,B", help="Only these columns, in this order: id,balance.")
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              help="Default: from -o's extension; else table on a terminal, csv when piped.")
@click.option("--output", "-o", metavar="PATH",
              help="Write to this file (replaced only once complete); - or none: stdout.")
@click.option("--sandbox", is_flag=True, help="Pull from the built-in simulator (no credentials needed).")
def pull(source: str, dataset: str, job_file: Path | None, params: tuple[str, ...], limit: int | None,
         columns: str | None, fmt: str | None, output: str | None, sandbox: bool) -> None:
    """Pull one DATASET of SOURCE to stdout or a file, with no job file.

    SOURCE is an API (tradesync, traderevolution), credentials from its usual variables, or with
    --job the name of one of the job's sources. DATASET: accounts, balances, equity, trades, and
    for TraderEvolution account_operations. stdout carries only data; progress and logs go to
    stderr. Exit codes as for run.
    """
    from .formats import FormatError, choose_format, replacing, write
    from .pull import PullRequest, fetch, parse_params, pull_job, select_columns

    setup_logging("text")
    try:
        chosen = choose_format(fmt, output, sys.stdout.isatty())
        request = PullRequest(source, dataset, job_file, parse_params(params), limit,
                              tuple(c.strip() for c in (columns or "").split(",") if c.strip()), sandbox)
        job = pull_job(request)
    except FormatError as exc:
        fail(str(exc), 2)
    except JobFileError as exc:
        fail(str(exc), exc.exit_code)
    target = None if output in (None, "-") else Path(str(output))
    if target is not None and not target.resolve().parent.is_dir():
        fail(f"-o {output}: the folder {target.resolve().parent} does not exist", 2)
    live = sys.stderr.isatty()
    reporter = Reporter(enabled=True, live=live)

    async def go() -> Any:
        loop = asyncio.get_running_loop()
        runs: list[Run] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: [r.request_stop() for r in runs])
        try:
            return await fetch(job, dict(os.environ), reporter, on_run=runs.append)
        finally:
            reporter.close()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    pulled = run_async(go)
    try:
        table = select_columns(pulled.table, request.columns)
    except JobFileError as exc:
        fail(str(exc), exc.exit_code)
    try:
        if target is None:
            write(table, chosen, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            with replacing(target) as out:
                write(table, chosen, out)
    except KeyboardInterrupt:
        fail("interrupted" + ("" if target is None else f": {target} was not written"), 130)
    except BrokenPipeError:
        # the reader stopped early (| head): what it read is what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    except OSError as exc:
        fail(f"cannot write {target or 'stdout'}: {exc.strerror or exc}", 1)
    where = "stdout" if target is None else str(target)
    requests = f"{pulled.requests} request{'' if pulled.requests == 1 else 's'}"
    click.echo(f"{table.num_rows} {dataset} rows of {source} to {where} ({chosen}, {requests})", err=True)


def sim_start(value: str) -> datetime:
    """``--start``: ``now`` (whole seconds) or an ISO date or datetime (UTC unless it says otherwise)."""
    if value == "now":
        return datetime.now(UTC).replace(microsecond=0)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(f"--start must be 'now' or an ISO date or datetime such as 2025-01-31T12:00:00Z, got {value!r}", 2)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


START_HELP = ("The simulator's clock at start: now, or an ISO date/datetime (2025-01-31T12:00:00Z gives the "
              "tests' data). Its data spans 90 days before it; POST /_sim/advance?seconds=N moves it.")


@main.group()
def sandbox() -> None:
    """Run a built-in API simulator in the foreground."""


@sandbox.command("tradesync")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8801, show_default=True)
@click.option("--accounts", type=click.IntRange(min=0), default=25, show_default=True)
@click.option("--trades-per-account", type=click.IntRange(min=0), default=200, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--latency-ms", type=click.FloatRange(min=0), default=0, show_default=True)
@click.option("--error-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--faults", default="500", show_default=True, help="Comma list: 500,503,429,429-retry-after,drop,html502")
@click.option("--rps", type=click.FloatRange(min=0), default=10, show_default=True, help="Rate limit (0 = off).")
@click.option("--retry-after/--no-retry-after", default=False, help="Send Retry-After on 429.")
@click.option("--warm", is_flag=True, help="Pre-render all account pages (for benchmarks).")
@click.option("--start", default="now", show_default=True, help=START_HELP)
def sandbox_tradesync(
    host: str, port: int, accounts: int, trades_per_account: int, seed: int, latency_ms: float,
    error_rate: float, faults: str, rps: float, retry_after: bool, warm: bool, start: str,
) -> None:
    """The Tradesync API simulator (key sim-key, secret sim-secret)."""
    from .sandbox.base import serve
    from .sandbox.tradesync import TradesyncSimConfig, TradesyncSimulator

    config = TradesyncSimConfig(
        seed=seed, accounts=accounts, trades_per_account=trades_per_account, latency_ms=latency_ms,
        error_rate=error_rate, fault_kinds=tuple(f.strip() for f in faults.split(",") if f.strip()),
        rate_limit_rps=rps, retry_after_header=retry_after, sim_start=sim_start(start),
    )
    simulator = TradesyncSimulator(config)
    if warm:
        simulator.warm()
    click.echo(
        f"Tradesync simulator on http://{host}:{port}, clock at {config.sim_start.isoformat()}. Point jobs at it:\n"
        f"  export TRADESYNC_BASE_URL=http://{host}:{port} TRADESYNC_API_KEY=sim-key TRADESYNC_API_SECRET=sim-secret"
    )
    with _quiet_interrupt():
        asyncio.run(serve(simulator.make_app(), host, port))


@sandbox.command("traderevolution")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8802, show_default=True)
@click.option("--users", type=click.IntRange(min=0), default=20, show_default=True, help="1-3 accounts each.")
@click.option("--positions-per-account", type=click.IntRange(min=0), default=150, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--latency-ms", type=click.FloatRange(min=0), default=0, show_default=True)
@click.option("--error-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--faults", default="500", show_default=True, help="Comma list: 500,503,429,drop,html502")
@click.option("--rps", type=click.FloatRange(min=0), default=3, show_default=True,
              help="Rate limit per token and collection (0 = off).")
@click.option("--blocking-threshold", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--blocking-duration", type=click.FloatRange(min=0), default=10, show_default=True)
@click.option("--access-ttl", type=click.FloatRange(min=0.1), default=300, show_default=True)
@click.option("--refresh-ttl", type=click.FloatRange(min=0.1), default=3600, show_default=True)
@click.option("--retry-after/--no-retry-after", default=False, help="Send Retry-After on 429.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="Serve HTTPS with this PEM cert.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="Private key of --tls-cert.")
@click.option("--start", default="now", show_default=True, help=START_HELP)
def sandbox_traderevolution(
    host: str, port: int, users: int, positions_per_account: int, seed: int, latency_ms: float,
    error_rate: float, faults: str, rps: float, blocking_threshold: int, blocking_duration: float,
    access_ttl: float, refresh_ttl: float, retry_after: bool, tls_cert: str | None, tls_key: str | None,
    start: str,
) -> None:
    """The TraderEvolution BackOffice simulator (login sim-user, password sim-pass)."""
    import ssl

    from aiohttp import web

    from .sandbox.traderevolution import BASE_PATH, TraderEvolutionSimConfig, TraderEvolutionSimulator

    config = TraderEvolutionSimConfig(
        seed=seed, users=users, positions_per_account=positions_per_account, latency_ms=latency_ms,
        error_rate=error_rate, fault_kinds=tuple(f.strip() for f in faults.split(",") if f.strip()),
        rate_limit_rps=rps, blocking_threshold=blocking_threshold, blocking_duration_s=blocking_duration,
        access_ttl_s=access_ttl, refresh_ttl_s=refresh_ttl, retry_after_header=retry_after,
        sim_start=sim_start(start),
    )
    context = None
    if tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls_cert, tls_key)
    scheme = "https" if context else "http"
    click.echo(
        f"TraderEvolution simulator on {scheme}://{host}:{port}{BASE_PATH}, clock at {config.sim_start.isoformat()}. "
        f"Point jobs at it:\n  export TRADEREVOLUTION_BASE_URL={scheme}://{host}:{port}{BASE_PATH} "
        "TRADEREVOLUTION_LOGIN=sim-user TRADEREVOLUTION_PASSWORD=sim-pass"
    )
    web.run_app(TraderEvolutionSimulator(config).make_app(), host=host, port=port, ssl_context=context,
                print=None, access_log=None)


class _quiet_interrupt:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, value: BaseException | None, tb: object) -> bool:
        return kind is KeyboardInterrupt


if __name__ == "__main__":  # pragma: no cover
    main()
