"""The bytes both simulators serve, pinned.

The simulators promise that their pages are a pure function of the seed, the knobs and the clock
(contracts, section 8): tests compare exports with ``expected_*`` values, but a benchmark or a
recorded demo relies on the bytes themselves. These digests were taken from the simulators before
they were split into packages (issue 13) and must not move with a refactor. A deliberate change to
the generated data is the one reason to update them, in the same commit as that change.

Each entry is the first 16 hex digits of sha256 over ``status, content type, body`` of one request
(the Swagger document names the port it was fetched from, so that is replaced first).
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from exporter.sandbox.traderevolution import TraderEvolutionSimConfig, te_simulator
from exporter.sandbox.tradesync import tradesync_simulator

TS_AUTH = "Basic " + base64.b64encode(b"sim-key:sim-secret").decode()
ALL_TIME = "startDate=0&endDate=4102444800000"


def _fetch(url: str, *, method: str = "GET", headers: dict[str, str] | None = None,
           data: bytes | None = None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read()


def _digest(status: int, content_type: str, body: bytes) -> str:
    return hashlib.sha256(f"{status}|{content_type}|".encode() + body).hexdigest()[:16]


def _numbered(pages: Iterator[tuple[str, str]]) -> dict[str, str]:
    """A path may be asked twice (before and after the clock moves): number the entries."""
    return {f"{n:02d} {path}": digest for n, (path, digest) in enumerate(pages)}


def _tradesync_pages(base: str, paths: list[str]) -> Iterator[tuple[str, str]]:
    for path in paths:
        if path.startswith("POST "):
            _fetch(base + path[5:], method="POST")
            continue
        yield path, _digest(*_fetch(base + path, headers={"Authorization": TS_AUTH}))


def _te_pages(base: str, paths: list[str]) -> Iterator[tuple[str, str]]:
    root = base.split("/proftrading/rest")[0]
    login = json.dumps({"login": "sim-user", "password": "sim-pass"}).encode()
    _, _, body = _fetch(base + "/auth/token", method="POST", data=login,
                        headers={"Content-Type": "application/json"})
    token = json.loads(body)["accessToken"]
    host = root.split("://", 1)[1].encode()
    for path in paths:
        if path.startswith("POST "):
            _fetch(root + path[5:], method="POST")
            # the token lifetime sees the clock jump too: log in again
            _, _, body = _fetch(base + "/auth/token", method="POST", data=login,
                                headers={"Content-Type": "application/json"})
            token = json.loads(body)["accessToken"]
            continue
        status, content_type, body = _fetch(base + path, headers={"Authorization": f"Bearer {token}"})
        yield path, _digest(status, content_type, body.replace(host, b"HOST"))


TS_PATHS = [
    "/accounts?order=asc&limit=7",
    "/accounts?limit=5",
    "/accounts?order=asc&limit=3&last_id=1241420",
    "/accounts/1241400",
    "/accounts/1241404",
    "/accounts/1241401",  # a gap in the ids: 404
    "/trades?order=asc&limit=40",
    "/trades?limit=25&account_ids=1241400,1241403,1241410",
    "/trades?order=asc&state=open&limit=30",
    "/trades/37000000",
    "/analyses?order=asc&limit=4",
    "/analyses/1241403",
    "/analyses/1241403/dailies?order=asc&start_date=2024-12-01&end_date=2025-01-31",
    "/analyses/1241403/monthlies?order=asc",
    "/brokers?order=asc",
    "/broker-servers?application=mt5",
    "/accounts?limit=abc&order=up",
    "/nowhere",
    "/accounts/999",
    "POST /_sim/advance?seconds=259200",
    "/accounts?order=asc&limit=7",
    "/trades?order=asc&state=closed&limit=30&last_id=37000400",
    "/analyses/1241403/dailies?order=asc&start_date=2025-01-25",
]

TS_EXPECTED: dict[str, str] = {
    "00 /accounts?order=asc&limit=7": "5c0bce2df695458f",
    "01 /accounts?limit=5": "a2a307d0e7c46a4e",
    "02 /accounts?order=asc&limit=3&last_id=1241420": "a7908da128450218",
    "03 /accounts/1241400": "5a83064df669a8e7",
    "04 /accounts/1241404": "ec71cb29b51b728d",
    "05 /accounts/1241401": "49192e790ca5205e",
    "06 /trades?order=asc&limit=40": "d92d8bdcb405d6d9",
    "07 /trades?limit=25&account_ids=1241400,1241403,1241410": "3d1ebb973cbd456a",
    "08 /trades?order=asc&state=open&limit=30": "99861c8b52ad719e",
    "09 /trades/37000000": "86eb8c2527fbed91",
    "10 /analyses?order=asc&limit=4": "a2a99075c9c61b39",
    "11 /analyses/1241403": "44eb3082b19fb92d",
    "12 /analyses/1241403/dailies?order=asc&start_date=2024-12-01&end_date=2025-01-31": "46840d0bef859f33",
    "13 /analyses/1241403/monthlies?order=asc": "fd85e43c46ec1886",
    "14 /brokers?order=asc": "8ea581c321ed70f2",
    "15 /broker-servers?application=mt5": "8db59f51eff9d609",
    "16 /accounts?limit=abc&order=up": "301149de20606f76",
    "17 /nowhere": "49192e790ca5205e",
    "18 /accounts/999": "49192e790ca5205e",
    "19 /accounts?order=asc&limit=7": "9a64aa5de3490b35",
    "20 /trades?order=asc&state=closed&limit=30&last_id=37000400": "80d02e70659cf95a",
    "21 /analyses/1241403/dailies?order=asc&start_date=2025-01-25": "70a1b159826fd10a",
}

TS_DRIFT_EXPECTED: dict[str, str] = {
    "drift=typed_fields /accounts?order=asc&limit=30": "c1c3bbd4f802e407",
    "drift=typed_fields /trades?limit=20": "e629c578dd5d6318",
    "drift=typed_fields /accounts/1241490": "20eb126b4469ea19",
    "drift=new_field /accounts?order=asc&limit=30": "521a754ff9998348",
    "drift=new_field /trades?limit=20": "e629c578dd5d6318",
    "drift=new_field /accounts/1241490": "0b02409db9c5eca2",
    "trade_new_field=True /accounts?order=asc&limit=30": "7137922625ab18eb",
    "trade_new_field=True /trades?limit=20": "f12366ceb44094a2",
    "trade_new_field=True /accounts/1241490": "a1e17b70a196c40b",
}

TS_FAULTS_EXPECTED = "d11aa5daed8b1b13"

TE_PATHS = [
    "/users?limit=5&offset=2",
    "/users/146005",
    "/users/146005/accounts",
    "/accounts/3243008",
    "/accounts",
    "/accounts?limit=4&offset=3",
    "/accountOperations?limit=50",
    f"/accountOperations?limit=40&offset=10&{ALL_TIME}",
    "/assets",
    "/reports",
    "/reports?name=Trades%20Report&sort=-id",
    f"/reports/119?{ALL_TIME}&isTotal=true",
    "/reports/153?assetName=EUR",
    f"/reports/117?{ALL_TIME}&limit=60&offset=5",
    "/reports/114?isTotal=true",
    f"/reports/127?{ALL_TIME}&limit=80",
    f"/reports/150?{ALL_TIME}&isTotal=true",
    "/reports/117",
    "/methods/errors?errorId=1.1.1.11",
    "/v2/api-docs",
    "/swagger-ui.html",
    "/accounts?limit=0",
    "/accounts/abc",
    "/nowhere",
    "/reports/153",
    "POST /_sim/advance?seconds=86400",
    f"/reports/117?{ALL_TIME}&limit=60&offset=5",
    "/reports/114",
    f"/accountOperations?{ALL_TIME}",
]

TE_EXPECTED: dict[str, str] = {
    "00 /users?limit=5&offset=2": "2387ce1c27d17dfe",
    "01 /users/146005": "03452f114ea2305b",
    "02 /users/146005/accounts": "1f31565839af6663",
    "03 /accounts/3243008": "6878e82da018c299",
    "04 /accounts": "3168f37b882fdfda",
    "05 /accounts?limit=4&offset=3": "47d3be47e3fcc9e9",
    "06 /accountOperations?limit=50": "6058e675dfaf9098",
    "07 /accountOperations?limit=40&offset=10&startDate=0&endDate=4102444800000": "e0ef2a549a8d1bb3",
    "08 /assets": "6b6d59c803c7bef4",
    "09 /reports": "589925882ac3a475",
    "10 /reports?name=Trades%20Report&sort=-id": "5a03e92ffafc1732",
    "11 /reports/119?startDate=0&endDate=4102444800000&isTotal=true": "506cbb008c05b290",
    "12 /reports/153?assetName=EUR": "c682b11ef3c9909c",
    "13 /reports/117?startDate=0&endDate=4102444800000&limit=60&offset=5": "27c28455232ce4c3",
    "14 /reports/114?isTotal=true": "1bc09bc01e2a087b",
    "15 /reports/127?startDate=0&endDate=4102444800000&limit=80": "2e82d1b036ba596d",
    "16 /reports/150?startDate=0&endDate=4102444800000&isTotal=true": "3e626ae8c09355c2",
    "17 /reports/117": "9400e38dd712ae72",
    "18 /methods/errors?errorId=1.1.1.11": "2bc0022dd465d4bc",
    "19 /v2/api-docs": "b376585b22cf6543",
    "20 /swagger-ui.html": "335e02b5c90b308f",
    "21 /accounts?limit=0": "11119614c96f42a3",
    "22 /accounts/abc": "06ebe205bce93248",
    "23 /nowhere": "a9b0ba45e28981b3",
    "24 /reports/153": "f5407e69ee8a51cc",
    "25 /reports/117?startDate=0&endDate=4102444800000&limit=60&offset=5": "27c28455232ce4c3",
    "26 /reports/114": "13f66485ff68bde6",
    "27 /accountOperations?startDate=0&endDate=4102444800000": "49fd6556056aa0a7",
}

TE_LOCAL_EXPECTED: dict[str, str] = {
    "/reports": "96df9eb33b8e663b",
    "/accounts?offset=1000": "285ae47ca4209be6",
    "/accountOperations": "94d0fb70350208ce",
    "/reports/133?startDate=0&endDate=4102444800000&isTotal=true": "071ad5be7e9e35a5",
    "/reports/958?startDate=0&endDate=4102444800000&isTotal=true": "88f2b1128e9f7f99",
    "/reports/674?startDate=0&endDate=4102444800000&isTotal=true": "6e995605cc58c410",
    "/reports/208?startDate=0&endDate=4102444800000&isTotal=true": "3b5f4fe3e3bb8ef9",
    "/reports/898?startDate=0&endDate=4102444800000&isTotal=true": "5a66556a2aaee1eb",
}

TE_FAULTS_EXPECTED = "58d3edb3d099e19f"


def tradesync_pages() -> dict[str, str]:
    with tradesync_simulator(accounts=40, trades_per_account=20, rate_limit_rps=0) as (base, _):
        return _numbered(_tradesync_pages(base, TS_PATHS))


def test_tradesync_pages_are_pinned() -> None:
    assert tradesync_pages() == TS_EXPECTED


def tradesync_drifted_pages() -> dict[str, str]:
    got: dict[str, str] = {}
    for knobs in ({"drift": "typed_fields"}, {"drift": "new_field"}, {"trade_new_field": True}):
        with tradesync_simulator(accounts=30, trades_per_account=5, rate_limit_rps=0, **knobs) as (base, _):
            label = ",".join(f"{k}={v}" for k, v in knobs.items())
            for path, digest in _tradesync_pages(base, ["/accounts?order=asc&limit=30", "/trades?limit=20",
                                                        "/accounts/1241490"]):
                got[f"{label} {path}"] = digest
    return got


def test_tradesync_drifted_pages_are_pinned() -> None:
    assert tradesync_drifted_pages() == TS_DRIFT_EXPECTED


def tradesync_fault_sequence() -> str:
    """Statuses and bodies of 40 requests under seeded faults, latency jitter and a rate limit
    (so slow that no token comes back during the test: the 429s do not depend on timing)."""
    knobs: dict[str, Any] = {
        "accounts": 10, "trades_per_account": 2, "error_rate": 0.3, "latency_jitter_ms": 2,
        "fault_kinds": ("500", "503", "429", "429-retry-after", "html502"), "code_case": "mixed",
        "rate_limit_rps": 0.001, "rate_limit_burst": 30, "retry_after_header": True,
    }
    with tradesync_simulator(**knobs) as (base, _):
        digests = [d for _, d in _tradesync_pages(base, ["/accounts?limit=2"] * 40)]
    return hashlib.sha256(" ".join(digests).encode()).hexdigest()[:16]


def test_tradesync_fault_sequence_is_pinned() -> None:
    assert tradesync_fault_sequence() == TS_FAULTS_EXPECTED


def traderevolution_pages() -> dict[str, str]:
    with te_simulator(users=8, positions_per_account=20, rate_limit_rps=0) as (base, _):
        return _numbered(_te_pages(base, TE_PATHS))


def test_traderevolution_pages_are_pinned() -> None:
    assert traderevolution_pages() == TE_EXPECTED


def traderevolution_local_time_pages() -> dict[str, str]:
    config = TraderEvolutionSimConfig(
        users=4, positions_per_account=10, rate_limit_rps=0, report_timezone="Europe/Berlin",
        report_datetime_format="YYYY-MM-dd hh:mm:ss.SSS a", report_new_column=True,
        report_new_column_cells="text", report_row_shape="object", report_ids="shuffled",
        events_at=(datetime(2024, 12, 1, 9, 30, tzinfo=UTC), datetime(2025, 1, 20, 23, 59, 59, tzinfo=UTC)),
        empty_list_status=204, default_limit=7,
    )
    with te_simulator(config) as (base, sim):
        ids = sim.report_ids
        paths = ["/reports", "/accounts?offset=1000", "/accountOperations"]
        paths += [f"/reports/{ids[name]}?{ALL_TIME}&isTotal=true" for name in sorted(ids)
                  if name != "Account statement in defined currency"]
        return dict(_te_pages(base, paths))


def test_traderevolution_local_time_and_drift_are_pinned() -> None:
    assert traderevolution_local_time_pages() == TE_LOCAL_EXPECTED


def traderevolution_fault_sequence() -> str:
    knobs: dict[str, Any] = {
        "users": 3, "positions_per_account": 2, "rate_limit_rps": 0, "error_rate": 0.3,
        "latency_jitter_ms": 2, "fault_kinds": ("500", "503", "429", "html502"), "fail_every_n": 7,
        "retry_after_header": True,
    }
    with te_simulator(**knobs) as (base, _):
        root = base.split("/proftrading/rest")[0]
        login = json.dumps({"login": "sim-user", "password": "sim-pass"}).encode()
        token = None
        while token is None:  # the login itself may be faulted
            status, _, body = _fetch(base + "/auth/token", method="POST", data=login,
                                     headers={"Content-Type": "application/json"})
            token = json.loads(body)["accessToken"] if status == 200 else None
        digests = [_digest(*_fetch(base + "/assets", headers={"Authorization": f"Bearer {token}"}))
                   for _ in range(40)]
        state = json.loads(_fetch(root + "/_sim/state")[2])
    assert state["faults_injected"] > 5
    return hashlib.sha256(" ".join(digests).encode()).hexdigest()[:16]


def test_traderevolution_fault_sequence_is_pinned() -> None:
    assert traderevolution_fault_sequence() == TE_FAULTS_EXPECTED

