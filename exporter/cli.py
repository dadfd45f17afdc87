"""Command line: thin commands that parse options, call one library function, and map errors
to exit codes in one place (0 ok, 1 run failed, 2 usage/job file, 3 auth, 4 another run holds the
lease, 130 interrupted)."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from . import __version__
from .errors import ExporterError, JobFileError
from .jobs import JobSpec, load_job, parse_job
from .progress import Reporter
from .runner import Run, RunOptions, RunResult
from .sources import registry

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
            }
        )


def setup_logging(fmt: str, verbose: bool = False) -> None:
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
    """One clear line on stderr, then exit with ``code`` (never a traceback for expected errors)."""
    click.echo(f"error: {message}", err=True)
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
@click.option("--resume", "resume", flag_value="require", help="Continue the interrupted run (fail if none).")
@click.option("--fresh", "resume", flag_value="fresh", help="Discard any interrupted run and start over.")
@click.option("--verbose", "-v", is_flag=True, help="Debug logging.")
def run(
    job_file: Path,
    output: str | None,
    datasets: tuple[str, ...],
    concurrency: int | None,
    rps: float | None,
    log_format: str | None,
    output_format: str | None,
    resume: str | None,
    verbose: bool,
) -> None:
    """Run JOB_FILE. By default an interrupted run of the same job is resumed."""
    try:
        job = load_job(job_file, registry()).with_overrides(
            datasets=datasets, concurrency=concurrency, rps=rps, log_format=log_format, output_format=output_format
        )
    except JobFileError as exc:
        fail(str(exc), exc.exit_code)
    setup_logging(job.log_format, verbose)
    out = output or job.output or "output"
    result = execute(job, out, resume or "auto", job.log_format)
    print_summary(result)


def execute(job: JobSpec, output: str | Path, resume: str, log_format: str) -> RunResult:
    live = sys.stderr.isatty() and log_format == "text"
    reporter = Reporter(enabled=True, live=live)
    options = RunOptions(output=output, resume=resume, reporter=reporter)

    async def go() -> RunResult:
        runner = Run(job, options)
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
            f"  {d.source}/{d.dataset:<18} {d.rows:>12,} rows {len(d.files):>4} files "
            f"{d.bytes / 1e6:>9.1f} MB  {d.path}{note}"
        )
    for source, stats in result.requests.items():
        lines.append(
            f"  {source}: {stats['requests']:,} requests, {stats['retries']:,} retries, {stats['http_429']:,} x 429"
        )
    click.echo("\n".join(lines))


DEMO_ACCOUNTS = 2000


def demo_job(accounts: int) -> JobSpec:
    raw = {
        "name": "demo",
        "sources": {
            "tradesync": {
                "concurrency": 8,
                "sandbox": {"accounts": accounts, "trades_per_account": 20, "rate_limit_rps": 0},
            },
            "traderevolution": {
                "concurrency": 8,
                "rps": 0,
                "sandbox": {"users": max(1, accounts // 40), "positions_per_account": 20, "rate_limit_rps": 0},
            },
        },
    }
    return parse_job(raw, Path("<demo>"), registry())


@main.command()
@click.option("--accounts", type=click.IntRange(min=1), default=DEMO_ACCOUNTS, show_default=True)
@click.option("--output", "-o", type=click.Path(path_type=Path), default=Path("output"), show_default=True)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text")
def demo(accounts: int, output: Path, log_format: str) -> None:
    """Export every dataset from the built-in simulators (no credentials needed)."""
    setup_logging(log_format)
    result = execute(demo_job(accounts), output, "fresh", log_format)
    print_summary(result)
    click.echo(f"Query it: duckdb -c \"SELECT * FROM read_parquet('{output}/*/balances/**/*.parquet', "
               "hive_partitioning=true, union_by_name=true) LIMIT 5\"")


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
def sandbox_tradesync(
    host: str, port: int, accounts: int, trades_per_account: int, seed: int, latency_ms: float,
    error_rate: float, faults: str, rps: float, retry_after: bool, warm: bool,
) -> None:
    """The Tradesync API simulator (key sim-key, secret sim-secret)."""
    from .sandbox._sim_base import serve
    from .sandbox.tradesync import TradesyncSimConfig, TradesyncSimulator

    config = TradesyncSimConfig(
        seed=seed, accounts=accounts, trades_per_account=trades_per_account, latency_ms=latency_ms,
        error_rate=error_rate, fault_kinds=tuple(f.strip() for f in faults.split(",") if f.strip()),
        rate_limit_rps=rps, retry_after_header=retry_after,
    )
    simulator = TradesyncSimulator(config)
    if warm:
        simulator.warm()
    click.echo(
        f"Tradesync simulator on http://{host}:{port}  "
        "(TRADESYNC_API_KEY=sim-key TRADESYNC_API_SECRET=sim-secret)"
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
def sandbox_traderevolution(
    host: str, port: int, users: int, positions_per_account: int, seed: int, latency_ms: float,
    error_rate: float, faults: str, rps: float, blocking_threshold: int, blocking_duration: float,
    access_ttl: float, refresh_ttl: float, retry_after: bool, tls_cert: str | None, tls_key: str | None,
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
    )
    context = None
    if tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls_cert, tls_key)
    scheme = "https" if context else "http"
    click.echo(
        f"TraderEvolution simulator on {scheme}://{host}:{port}{BASE_PATH}  "
        "(TRADEREVOLUTION_LOGIN=sim-user TRADEREVOLUTION_PASSWORD=sim-pass)"
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
