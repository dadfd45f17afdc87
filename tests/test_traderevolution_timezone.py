"""TraderEvolution report times written in the server's own zone, over real loopback HTTP.

Cyprus (Europe/Nicosia) in 2024: the clocks go forward at 2024-03-31 01:00Z (03:00 EET becomes
04:00 EEST, so local 03:00-03:59 never happens) and back at 2024-10-27 01:00Z (04:00 EEST becomes
03:00 EET, so local 03:00-03:59 happens twice).
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from exporter.errors import JobFileError
from exporter.jobs import load_job
from exporter.sandbox.traderevolution import TraderEvolutionSimConfig, te_simulator
from exporter.sources import registry

from .helpers import make_job, read_dataset, run

NICOSIA = "Europe/Nicosia"
SPRING = datetime(2024, 3, 31, 1, tzinfo=UTC)
AUTUMN = datetime(2024, 10, 27, 1, tzinfo=UTC)
SIM_START = datetime(2024, 11, 15, 12, tzinfo=UTC)
SINCE = datetime(2024, 3, 10, tzinfo=UTC)
SECOND, HOUR = timedelta(seconds=1), timedelta(hours=1)
# both sides of both changes; the autumn ones outside the repeated hour or in its first pass
EXACT = (
    SPRING - 30 * 60 * SECOND,  # 02:30 EET
    SPRING - SECOND,  # 02:59:59 EET
    SPRING,  # 04:00:00 EEST
    SPRING + 30 * 60 * SECOND,  # 04:30 EEST
    AUTUMN - HOUR - SECOND,  # 02:59:59 EEST
    AUTUMN - 30 * 60 * SECOND,  # 03:30 EEST, first pass of the repeated hour
    AUTUMN + HOUR,  # 04:00 EET
    AUTUMN + 90 * 60 * SECOND,  # 04:30 EET
    SINCE,  # the first instant of the first window
)
SECOND_PASS = (AUTUMN + 30 * 60 * SECOND,)  # 03:30 EET again: the same text as AUTUMN - 30 min
OUTSIDE = SINCE - SECOND  # before the history the job asks for: must not be exported
FORMAT = "dd.MM.yyyy HH:mm:ss.SSS"  # milliseconds, so every random fill compares exactly too


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def te_env(base_url: str) -> dict[str, str]:
    return {"TRADEREVOLUTION_BASE_URL": base_url, "TRADEREVOLUTION_LOGIN": "sim-user",
            "TRADEREVOLUTION_PASSWORD": "sim-pass"}


def te_job(**settings: object):
    source = {"concurrency": 4, "rps": 0, "since": SINCE.isoformat(), "until": SIM_START.isoformat(),
              "window_days": 30, "operations_window_days": 300, "report_datetime_format": FORMAT, **settings}
    return make_job({"traderevolution": source}, name="te")


def sim_config(**knobs: object) -> TraderEvolutionSimConfig:
    return TraderEvolutionSimConfig(users=4, positions_per_account=20, rate_limit_rps=0, sim_start=SIM_START,
                                    history_days=260, report_datetime_format=FORMAT, **knobs)


def manifest(output: Path, dataset: str) -> dict:
    path = next((output / "traderevolution" / dataset).glob("snapshot_date=*/_manifest.json"))
    return json.loads(path.read_text())


def test_the_zone_rules_are_as_the_tests_assume() -> None:
    zone = ZoneInfo(NICOSIA)
    offsets = [(SPRING + d).astimezone(zone).utcoffset() for d in (-SECOND, timedelta(0))]
    assert offsets == [2 * HOUR, 3 * HOUR]
    offsets = [(AUTUMN + d).astimezone(zone).utcoffset() for d in (-SECOND, timedelta(0))]
    assert offsets == [3 * HOUR, 2 * HOUR]
    first, second = (AUTUMN - 30 * 60 * SECOND).astimezone(zone), SECOND_PASS[0].astimezone(zone)
    assert first.replace(tzinfo=None) == second.replace(tzinfo=None)  # one wall-clock time, two instants


@pytest.fixture(scope="module")
def nicosia(tmp_path_factory: pytest.TempPathFactory):
    """A server writing report times in Nicosia, a job reading them in Nicosia."""
    output = tmp_path_factory.mktemp("te-nicosia")
    config = sim_config(report_timezone=NICOSIA, events_at=(*EXACT, *SECOND_PASS, OUTSIDE))
    with te_simulator(config) as (url, simulator):
        # the per-account list: its epoch-ms instants against the report's wall-clock cells
        run(te_job(datasets=["accounts", "account_operations", "trades"], report_timezone=NICOSIA,
                   operations_route="per_account"), output, te_env(url))
        instants = simulator.expected_trade_instants(ms(SINCE), ms(SIM_START))
        operations = simulator.expected_account_operations(ms(SINCE), ms(SIM_START))
        headers, rows = simulator.expected_report("Trades Report", ms(SINCE), ms(SIM_START))
    cells = {row[headers.index("tradeid")]: row[headers.index("time")] for row in rows}
    return output, instants, operations, cells


def test_every_exported_trade_time_is_the_servers_true_instant(nicosia) -> None:
    output, instants, _, cells = nicosia
    trades = read_dataset(output, "traderevolution", "trades")
    got = dict(zip(trades.column("tradeid").to_pylist(), trades.column("time").to_pylist(), strict=True))
    assert len(got) == trades.num_rows  # each trade once: windows neither overlap nor leave gaps
    assert set(got) == set(instants)  # the windows are true instants: SINCE is in, SINCE - 1 s is out
    assert OUTSIDE not in instants.values() and SINCE in instants.values()
    second_pass = {t for t, moment in instants.items() if moment in SECOND_PASS}
    assert len(second_pass) == 1
    summer = [t for t, moment in instants.items() if SPRING <= moment < AUTUMN]
    winter = [t for t in instants if t not in summer]
    assert len(summer) > 50 and len(winter) > 20  # random fills on both sides, not only the pinned ones
    for trade, moment in instants.items():
        if trade not in second_pass:
            assert got[trade] == moment, (trade, cells[trade])
    for moment in EXACT:
        assert moment in got.values()
    # the server really wrote local time: read as UTC, the cells would be 2 or 3 hours late
    for trade in summer[:5] + winter[:5]:
        as_utc = datetime.strptime(cells[trade], "%d.%m.%Y %H:%M:%S.%f").replace(tzinfo=UTC)
        assert as_utc - instants[trade] == (3 * HOUR if trade in summer else 2 * HOUR)


def test_the_repeated_autumn_hour_reads_as_its_earlier_instant(nicosia) -> None:
    output, instants, _, cells = nicosia
    first = next(t for t, moment in instants.items() if moment == AUTUMN - 30 * 60 * SECOND)
    second = next(t for t, moment in instants.items() if moment == SECOND_PASS[0])
    assert cells[first] == cells[second] == "27.10.2024 03:30:00.000"
    trades = read_dataset(output, "traderevolution", "trades")
    got = dict(zip(trades.column("tradeid").to_pylist(), trades.column("time").to_pylist(), strict=True))
    assert got[first] == got[second] == AUTUMN - 30 * 60 * SECOND  # fold=0: the first pass, summer time
    assert manifest(output, "trades")["datasets"]["trades"]["rejected_rows"] == 0


def test_operations_keep_their_epoch_instants_across_both_changes(nicosia) -> None:
    output, _, operations, _ = nicosia
    table = read_dataset(output, "traderevolution", "account_operations")
    got = dict(zip(table.column("id").to_pylist(), table.column("created_at").to_pylist(), strict=True))
    assert set(got) == {o["id"] for o in operations}
    for op in operations:
        assert got[op["id"]] == datetime.fromtimestamp(op["createdAt"] / 1000, UTC)
    pinned = {datetime.fromtimestamp(o["createdAt"] / 1000, UTC) for o in operations
              if o["frontendComment"] == "Deposit at a chosen instant"}
    assert pinned == {*EXACT, *SECOND_PASS}


def test_each_manifest_records_the_zone(nicosia) -> None:
    output, *_ = nicosia
    for dataset in ("accounts", "account_operations", "trades"):
        assert manifest(output, dataset)["source_settings"]["report_timezone"] == NICOSIA


def test_a_time_the_zone_skips_is_rejected_with_its_reason(tmp_path: Path) -> None:
    # the server writes UTC but the job says Nicosia: 03:30 on the spring-forward day names no instant
    gap = datetime(2024, 3, 31, 3, 30, tzinfo=UTC)
    with te_simulator(sim_config(events_at=(gap,))) as (url, simulator):
        run(te_job(datasets=["trades"], report_timezone=NICOSIA), tmp_path, te_env(url))
        instants = simulator.expected_trade_instants(ms(SINCE), ms(SIM_START))
    victim = next(t for t, moment in instants.items() if moment == gap)
    trades = read_dataset(tmp_path, "traderevolution", "trades")
    got = dict(zip(trades.column("tradeid").to_pylist(), trades.column("time").to_pylist(), strict=True))
    assert set(got) == set(instants)  # the row is kept, with a null time
    assert got[victim] is None
    assert [t for t, value in got.items() if value is None] == [victim]
    meta = manifest(tmp_path, "trades")["datasets"]["trades"]
    assert meta["rejected_rows"] == 1 and meta["rejects_by_column"] == {"time": 1}
    rejects_file = next((tmp_path / "traderevolution" / "trades").glob("snapshot_date=*/_rejects.jsonl"))
    [reject] = [json.loads(line) for line in rejects_file.read_text().splitlines()]
    assert reject["record"]["tradeid"] == victim and reject["record"]["time"] == "31.03.2024 03:30:00.000"
    assert reject["problems"] == {"time": "timestamp: 2024-03-31 03:30:00 does not exist in Europe/Nicosia "
                                          "(the clocks skip it)"}


def test_utc_is_the_default_and_recorded(tmp_path: Path) -> None:
    with te_simulator(sim_config(events_at=(SPRING, AUTUMN))) as (url, simulator):
        run(te_job(datasets=["trades"]), tmp_path, te_env(url))
        instants = simulator.expected_trade_instants(ms(SINCE), ms(SIM_START))
    trades = read_dataset(tmp_path, "traderevolution", "trades")
    got = dict(zip(trades.column("tradeid").to_pylist(), trades.column("time").to_pylist(), strict=True))
    assert got == instants and len(got) > 50
    assert manifest(tmp_path, "trades")["source_settings"] == {"report_timezone": "UTC"}


def _job_file(path: Path, zone: object) -> Path:
    value = json.dumps(zone)  # a TOML basic string or integer
    path.write_text(f'name = "te"\n[sources.traderevolution]\ndatasets = ["trades"]\nreport_timezone = {value}\n')
    return path


@pytest.mark.parametrize("zone", ["Mars/Olympus", "Europe", "europe/nicosia", "", "../../etc/passwd", "localtime"])
def test_an_unknown_zone_is_a_job_file_error_naming_file_and_key(tmp_path: Path, zone: str) -> None:
    path = _job_file(tmp_path / "te.toml", zone)
    with pytest.raises(JobFileError) as info:
        load_job(path, registry())
    message = str(info.value)
    assert message.startswith(f"{path}: key 'sources.traderevolution.report_timezone': ")
    assert repr(zone) in message and info.value.exit_code == 2


def test_an_unknown_zone_exits_2_with_one_line(tmp_path: Path) -> None:
    path = _job_file(tmp_path / "te.toml", "Europe/Atlantis")
    proc = subprocess.run([sys.executable, "-m", "exporter.cli", "run", str(path), "-o", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert str(path) in errors[0] and "sources.traderevolution.report_timezone" in errors[0]
    assert "Europe/Atlantis" in errors[0]


def test_known_zones_are_accepted(tmp_path: Path) -> None:
    for zone in ("UTC", NICOSIA, "Etc/GMT-2"):
        job = load_job(_job_file(tmp_path / "te.toml", zone), registry())
        assert job.sources[0].options.report_timezone == zone
    (tmp_path / "default.toml").write_text('name = "te"\n[sources.traderevolution]\ndatasets = ["trades"]\n')
    assert load_job(tmp_path / "default.toml", registry()).sources[0].options.report_timezone == "UTC"
