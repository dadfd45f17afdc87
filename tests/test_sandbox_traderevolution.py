"""Tests of the TraderEvolution BO API simulator, over real HTTP on localhost."""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from exporter.sandbox.traderevolution import (
    ALL_FAULTS,
    REPORT_COLUMNS,
    REPORT_DEMO_IDS,
    TraderEvolutionSimConfig,
    TraderEvolutionSimulator,
    te_simulator,
)

STATEMENT = "Account Statement Report"
STATEMENT_CCY = "Account statement in defined currency"
TRADES = "Trades Report"
OPEN_POSITIONS = "Open Positions Report"
POSITIONS_HISTORY = "Positions History Report"
OPERATIONS = "Account operation report (settled and unsettled)"

SMALL = {"users": 6, "positions_per_account": 40, "rate_limit_rps": 0}
ALL_TIME = {"startDate": 0, "endDate": 4_102_444_800_000}  # 1970 .. 2100


class Api:
    """A tiny urllib client: (status, headers, body bytes), never raises on HTTP errors."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.root = base.split("/proftrading/rest")[0]
        self.token: str | None = None

    def call(self, method: str, path: str, params: dict[str, Any] | None = None, *,
             body: Any = None, raw: bytes | None = None, headers: dict[str, str] | None = None,
             auth: bool = True, root: bool = False) -> tuple[int, dict[str, str], bytes]:
        url = (self.root if root else self.base) + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        all_headers = dict(headers or {})
        if auth and self.token:
            all_headers.setdefault("Authorization", f"Bearer {self.token}")
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            all_headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def get(self, path: str, **params: Any) -> tuple[int, Any]:
        status, _, body = self.call("GET", path, params)
        return status, _decode(body)

    def login(self, login: str = "sim-user", password: str = "sim-pass") -> tuple[int, Any]:
        status, _, body = self.call("POST", "/auth/token", body={"login": login,
                                                                 "password": password})
        payload = _decode(body)
        if status == 200:
            self.token = payload["accessToken"]
        return status, payload

    def page_all(self, path: str, limit: int, **params: Any) -> list[Any]:
        """The contract's blind paging: stop on a short page, [] or 204."""
        rows: list[Any] = []
        while True:
            status, page = self.get(path, limit=limit, offset=len(rows), **params)
            assert status in (200, 204), (status, page)
            rows.extend(page or [])
            if status == 204 or len(page) < limit:
                return rows

    def report(self, name: str, **params: Any) -> tuple[int, Any]:
        status, listing = self.get("/reports", name=name)
        assert status == 200 and len(listing) == 1
        return self.get(f"/reports/{listing[0]['id']}", **params)

    def report_rows(self, name: str, **params: Any) -> tuple[list[str], list[Any]]:
        """Every row of a report run, paged with limit/offset until a short page."""
        rows: list[Any] = []
        while True:
            status, page = self.report(name, limit=500, offset=len(rows), **params)
            assert status == 200, page
            rows.extend(page["data"])
            if len(page["data"]) < 500:
                return page["headers"], rows

    def sim(self, method: str, path: str, **params: Any) -> dict[str, Any]:
        status, _, body = self.call(method, path, params, root=True, auth=False)
        assert status == 200
        return _decode(body)


def _decode(body: bytes) -> Any:
    # Decimals keep the served number text exact, as the exporter must.
    return json.loads(body, parse_float=Decimal) if body else None


def _error(body: Any) -> str:
    return body["errors"][0]


@contextmanager
def running(**overrides: Any) -> Iterator[tuple[Api, TraderEvolutionSimulator]]:
    with te_simulator(**overrides) as (base, sim):
        yield Api(base), sim


@contextmanager
def logged_in(**overrides: Any) -> Iterator[tuple[Api, TraderEvolutionSimulator]]:
    with running(**overrides) as (api, sim):
        assert api.login()[0] == 200
        yield api, sim


# --------------------------------------------------------------------------- auth


def test_login_success_and_credential_errors() -> None:
    with running(**SMALL) as (api, _):
        status, body = api.login()
        assert status == 200
        assert set(body) == {"accessToken", "refreshToken", "accessTokenLifeTime",
                             "refreshTokenLifeTime"}
        assert (body["accessTokenLifeTime"], body["refreshTokenLifeTime"]) == (300, 3600)
        assert api.login(password="nope") == (401, {"errors": ["1.2.0.11"]})
        assert api.login(login="someone") == (401, {"errors": ["1.2.0.11"]})
        assert api.login(login="sim-noapi") == (401, {"errors": ["2.0.2.4"]})
        status, _, body = api.call("POST", "/auth/token", raw=b"{not json", auth=False)
        assert status == 400
        status, _, body = api.call("POST", "/auth/token", body={"login": "sim-user"}, auth=False)
        assert status == 400


def test_missing_invalid_and_raw_tokens() -> None:
    with running(**SMALL) as (api, _):
        assert api.get("/accounts") == (401, {"errors": ["1.1.1.11"]})
        api.token = "forged"
        assert api.get("/accounts")[0] == 401
        api.login()
        raw = {"Authorization": api.token or ""}
        assert api.call("GET", "/accounts", headers=raw)[0] == 401  # no "Bearer "
        assert api.get("/accounts")[0] == 200
    with running(accept_raw_token=True, **SMALL) as (api, _):
        api.login()
        assert api.call("GET", "/accounts", headers={"Authorization": api.token or ""})[0] == 200


def test_refresh_rotates_the_refresh_token() -> None:
    with running(**SMALL) as (api, sim):
        _, first = api.login()
        status, _, body = api.call("GET", "/auth/token/refresh",
                                   headers={"token": first["refreshToken"]}, auth=False)
        assert status == 200
        second = _decode(body)
        assert second["refreshToken"] != first["refreshToken"]
        assert second["accessToken"] != first["accessToken"]
        status, _, body = api.call("GET", "/auth/token/refresh",
                                   headers={"token": first["refreshToken"]}, auth=False)
        assert (status, _decode(body)) == (401, {"errors": ["1.1.1.11"]})
        api.token = second["accessToken"]
        assert api.get("/assets")[0] == 200
        assert api.call("GET", "/auth/token/refresh", auth=False)[0] == 401
        assert sim.state()["refreshes"] == 1 and sim.state()["logins"] == 1


def test_access_token_expires_in_real_time_and_on_advance() -> None:
    with logged_in(access_ttl_s=1, **SMALL) as (api, _):
        assert api.get("/assets")[0] == 200
        time.sleep(1.2)
        assert api.get("/assets") == (401, {"errors": ["1.1.1.11"]})
    with logged_in(**SMALL) as (api, _):
        api.sim("POST", "/_sim/advance", seconds=299)
        assert api.get("/assets")[0] == 200
        api.sim("POST", "/_sim/advance", seconds=2)
        assert api.get("/assets")[0] == 401


# --------------------------------------------------------------------------- paging, validation


def test_limit_offset_paging_matches_expected_accounts() -> None:
    with logged_in(**SMALL) as (api, sim):
        expected = sim.expected_accounts()
        assert len(expected) > 7
        assert api.page_all("/accounts", limit=3) == expected
        assert [a["id"] for a in expected] == sorted(a["id"] for a in expected)
        assert api.get("/accounts", limit=2, offset=len(expected)) == (200, [])
        status, page = api.get("/accounts", limit=4, offset=len(expected) - 1)
        assert status == 200 and page == expected[-1:]


def test_empty_list_status_204_and_limit_clamp() -> None:
    with logged_in(empty_list_status=204, max_limit=5, default_limit=4, **SMALL) as (api, sim):
        status, _, body = api.call("GET", "/accounts", {"offset": 10_000})
        assert (status, body) == (204, b"")
        assert len(api.get("/accounts", limit=100)[1]) == 5  # silently clamped
        assert len(api.get("/accounts")[1]) == 4  # default_limit
        assert api.page_all("/accounts", limit=5) == sim.expected_accounts()
        assert api.call("GET", "/accountOperations", {"accountId": 1})[0] == 204


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/accounts", {"limit": "abc"}, 400),
        ("/accounts", {"limit": "0"}, 406),
        ("/accounts", {"limit": "-3"}, 406),
        ("/accounts", {"offset": "x"}, 400),
        ("/accounts", {"offset": "-1"}, 406),
        ("/accounts", {"userId": "x"}, 400),
        ("/accountOperations", {"startDate": "yesterday"}, 400),
        ("/accountOperations", {"startDate": "10", "endDate": "5"}, 406),
        ("/accountOperations", {"accountId": "1.5"}, 400),
        ("/accounts/abc", {}, 400),
        ("/accounts/1", {}, 404),
        ("/users/1", {}, 404),
        ("/users/1/accounts", {}, 404),
        ("/reports/999999", {}, 404),
        ("/reports/117", {"isTotal": "maybe"}, 400),
        ("/reports", {"sort": "size"}, 406),
        ("/no/such/route", {}, 404),
    ],
)
def test_validation_errors(path: str, params: dict[str, str], status: int) -> None:
    with logged_in(users=2, positions_per_account=5, rate_limit_rps=0) as (api, _):
        got, body = api.get(path, **params)
        assert got == status
        assert body == {"errors": [f"9.0.0.{status}"]}


def test_method_not_allowed_unknown_filter_and_lookups() -> None:
    with logged_in(**SMALL) as (api, sim):
        assert api.call("POST", "/accounts", body={})[0] == 405
        assert api.call("DELETE", "/reports")[0] == 405
        assert api.get("/accountOperations", accountId=1) == (200, [])
        account = sim.expected_accounts()[0]
        assert api.get(f"/accounts/{account['id']}") == (200, account)
        status, users = api.get("/users", login=account["login"])
        assert status == 200 and [u["id"] for u in users] == [account["userId"]]
        status, user = api.get(f"/users/{account['userId']}")
        assert user["login"] == account["login"] and user["email"].endswith("@example.com")
        status, owned = api.get(f"/users/{account['userId']}/accounts")
        assert account in owned and all(a["userId"] == account["userId"] for a in owned)
        assert api.get("/assets") == (200, [{"id": 4800, "name": "USD"},
                                            {"id": 4801, "name": "EUR"},
                                            {"id": 4802, "name": "GBP"}])
        assert api.get("/methods/errors", errorId="1.6.2.2")[1]["errorId"] == "1.6.2.2"


def test_swagger_needs_no_auth() -> None:
    with running(**SMALL) as (api, _):
        status, doc = api.get("/v2/api-docs")
        assert status == 200 and doc["swagger"] == "2.0"
        assert doc["basePath"] == "/proftrading/rest"
        assert doc["paths"]["/reports"]["get"]["operationId"] == "reportsUsingGET"
        assert api.call("GET", "/swagger-ui.html")[0] == 200


# --------------------------------------------------------------------------- reports


def test_reports_listing_by_name_and_sort() -> None:
    with logged_in(**SMALL) as (api, _):
        status, listing = api.get("/reports")
        assert status == 200
        assert {r["name"]: r["id"] for r in listing} == REPORT_DEMO_IDS
        assert [r["id"] for r in listing] == sorted(REPORT_DEMO_IDS.values())
        _, by_name = api.get("/reports", name=f"{TRADES},{STATEMENT}", sort="-name")
        assert by_name == [{"name": TRADES, "id": 117}, {"name": STATEMENT, "id": 119}]
        _, desc = api.get("/reports", sort="-id")
        assert [r["id"] for r in desc] == sorted(REPORT_DEMO_IDS.values(), reverse=True)
        assert api.get("/reports", name="Trades")[1] == []  # exact names only


def test_shuffled_report_ids_resolve_by_name_only() -> None:
    with logged_in(report_ids="shuffled", **SMALL) as (api, sim):
        _, listing = api.get("/reports")
        ids = {r["name"]: r["id"] for r in listing}
        assert set(ids) == set(REPORT_DEMO_IDS)
        assert not set(ids.values()) & set(REPORT_DEMO_IDS.values())
        assert ids == sim.report_ids
        assert api.get("/reports/117")[0] == 404
        status, report = api.get(f"/reports/{ids[TRADES]}", **ALL_TIME)
        assert status == 200 and report["headers"] == REPORT_COLUMNS[TRADES]
    with running(report_ids="shuffled", **SMALL) as (_, again):
        assert again.report_ids == sim.report_ids  # seeded


def test_report_153_requires_asset_name() -> None:
    with logged_in(**SMALL) as (api, sim):
        assert api.get("/reports/153") == (406, {"errors": ["1.6.2.2"]})
        status, report = api.get("/reports/153", assetName="EUR")
        assert status == 200
        assert report["data"] == sim.expected_report(STATEMENT_CCY, asset_name="EUR")[1]
        assert api.get("/reports/153", assetName="XYZ")[1]["data"] == []


def test_windowed_report_defaults_to_the_clock_day() -> None:
    with logged_in(rate_limit_rps=0) as (api, sim):
        status, today = api.report(TRADES)
        assert status == 200 and today["data"]
        stamps = [row[today["headers"].index("time")] for row in today["data"]]
        assert all(s.startswith("31.01.2025 ") for s in stamps)  # clock is 2025-01-31 12:00Z
        assert max(stamps) <= "31.01.2025 12:00:00"
        assert today["data"] == sim.expected_report(TRADES)[1]
        _, everything = api.report_rows(TRADES, **ALL_TIME)
        assert len(everything) > len(today["data"])
        # Snapshots ignore dates.
        _, snap = api.report(STATEMENT, startDate=0, endDate=1)
        assert len(snap["data"]) == len(sim.expected_accounts())


def test_rows_as_objects_and_report_filters() -> None:
    with logged_in(report_row_shape="object", **SMALL) as (api, sim):
        account = sim.expected_accounts()[1]
        status, report = api.report(OPERATIONS, accountId=account["id"], **ALL_TIME)
        assert status == 200 and report["data"]
        headers, rows = sim.expected_report(OPERATIONS, *ALL_TIME.values(),
                                            account_id=account["id"])
        assert report["data"] == [dict(zip(headers, row, strict=True)) for row in rows]
        assert {r["account"] for r in report["data"]} == {account["accountName"]}
        _, by_login = api.report(STATEMENT, login=account["login"])
        assert {r["login"] for r in by_login["data"]} == {account["login"]}
        _, paged = api.report(OPERATIONS, accountId=account["id"], limit=2, offset=1,
                              **ALL_TIME)
        assert paged["data"] == report["data"][1:3]
        _, none = api.report(TRADES, login="nobody", **ALL_TIME)
        assert none == {"headers": REPORT_COLUMNS[TRADES], "data": []}


def test_is_total_sums_numeric_columns() -> None:
    with logged_in(**SMALL) as (api, _):
        _, report = api.report(TRADES, isTotal="true", limit=5, **ALL_TIME)
        _, rows = api.report_rows(TRADES, **ALL_TIME)
        headers, total = report["headers"], report["total"]
        assert len(total) == len(headers) and len(report["data"]) == 5
        for column in ("profit", "executionfee", "amount", "tradeid"):
            i = headers.index(column)
            assert total[i] == sum(row[i] for row in rows)
        assert total[headers.index("account")] is None
        assert total[headers.index("time")] is None
        assert "total" not in api.report(TRADES, isTotal="false")[1]


@pytest.mark.parametrize(
    ("fmt", "render"),
    [
        ("dd.MM.yyyy HH:mm:ss", lambda d: d.strftime("%d.%m.%Y %H:%M:%S")),
        ("dd.MM.yyyy", lambda d: d.strftime("%d.%m.%Y")),
        ("DD-MM-YYYY HH:mm:ss.SSS",
         lambda d: d.strftime("%d-%m-%Y %H:%M:%S.") + f"{d.microsecond // 1000:03d}"),
        ("hh:mm:ss", lambda d: d.strftime("%I:%M:%S")),  # 12-hour clock, as in Java
    ],
)
def test_report_datetime_formats(fmt: str, render: Callable[[datetime], str]) -> None:
    sim = TraderEvolutionSimulator(TraderEvolutionSimConfig(
        users=2, positions_per_account=10, report_datetime_format=fmt))
    headers, rows = sim.expected_report(OPERATIONS, *ALL_TIME.values())
    created_at = {o["id"]: o["createdAt"] for o in sim.expected_account_operations()}
    assert rows
    for row in rows:
        ms = created_at[row[headers.index("accountoperationid")]]
        stamp = datetime.fromtimestamp(ms // 1000, UTC) + timedelta(milliseconds=ms % 1000)
        assert row[headers.index("createdat")] == render(stamp)


def test_unsupported_datetime_format_is_refused() -> None:
    with pytest.raises(ValueError):
        TraderEvolutionSimConfig(report_datetime_format="yyyy-MM-dd'T'HH")


# --------------------------------------------------------------------------- rate limit, faults


def test_rate_limit_then_block_then_unblock() -> None:
    cfg = {"users": 2, "positions_per_account": 5, "rate_limit_rps": 1,
           "blocking_threshold": 3, "blocking_duration_s": 1, "retry_after_header": True}
    with logged_in(**cfg) as (api, sim):
        assert api.get("/accounts")[0] == 200
        assert api.get("/assets")[0] == 200  # a separate bucket per collection
        status, headers, body = api.call("GET", "/accounts")
        assert (status, _decode(body), headers["Retry-After"]) == (
            429, {"errors": ["2.147.1.27"]}, "1")
        assert api.get("/accounts")[0] == 429
        assert api.get("/accounts")[0] == 429  # third violation: the token is blocked
        status, headers, _ = api.call("GET", "/users")
        assert status == 429 and headers["Retry-After"] == "1"
        assert sim.state()["blocked_tokens"] == 1
        time.sleep(1.1)
        assert api.get("/users")[0] == 200
        assert sim.state()["blocked_tokens"] == 0
        assert sim.state()["rate_limited"] == 4
        assert sim.state()["blocks_total"] == 1  # the block is over, yet counted


def test_login_is_limited_per_login_and_no_retry_after_by_default() -> None:
    with running(users=2, positions_per_account=5, rate_limit_rps=1) as (api, _):
        assert api.login()[0] == 200
        status, headers, _ = api.call("POST", "/auth/token",
                                      body={"login": "sim-user", "password": "sim-pass"})
        assert status == 429 and "Retry-After" not in headers
        assert api.login(login="sim-noapi")[0] == 401  # another login, another bucket


@pytest.mark.parametrize("kind", ALL_FAULTS)
def test_each_fault_kind_is_observable(kind: str) -> None:
    with logged_in(fail_every_n=2, fault_kinds=(kind,), **SMALL) as (api, sim):
        # The login was request 1; request 2 is faulted.
        if kind == "drop":
            with pytest.raises((http.client.RemoteDisconnected, ConnectionError,
                                urllib.error.URLError)):
                api.call("GET", "/accounts")
        else:
            status, headers, body = api.call("GET", "/accounts")
            if kind == "html502":
                assert status == 502 and headers["Content-Type"].startswith("text/html")
                assert b"nginx" in body
            else:
                code = "2.147.1.27" if kind == "429" else f"9.0.0.{kind}"
                assert (status, _decode(body)) == (int(kind), {"errors": [code]})
        assert api.get("/accounts")[0] == 200
        state = sim.state()
        assert state["faults_injected"] == 1 and state["faults_by_kind"] == {kind: 1}
        assert state["blocked_tokens"] == 0


def test_error_rate_is_seeded() -> None:
    def statuses(seed: int) -> list[int]:
        with running(seed=seed, error_rate=0.5, fault_kinds=("500", "503"), **SMALL) as (api, _):
            return [api.login()[0] for _ in range(30)]  # logins are faulted too

    first = statuses(7)
    assert first == statuses(7)
    assert {200, 500, 503} <= set(first)


def test_peak_in_flight_counts_concurrent_requests() -> None:
    with logged_in(latency_ms=200, **SMALL) as (api, _):
        api.sim("POST", "/_sim/reset")
        api.login()
        with ThreadPoolExecutor(max_workers=5) as pool:
            statuses = list(pool.map(lambda _: api.call("GET", "/assets")[0], range(5)))
        assert statuses == [200] * 5
        state = api.sim("GET", "/_sim/state")
        assert state["peak_in_flight"] == 5
        assert state["requests_total"] == 6
        assert state["responses_by_status"] == {"200": 6}


# --------------------------------------------------------------------------- data


def test_balances_are_consistent_with_operations() -> None:
    with logged_in(**SMALL) as (api, _):
        operations = api.page_all("/accountOperations", limit=500)
        _, statement = api.report(STATEMENT)
        headers = statement["headers"]
        assert len(statement["data"]) > 5
        for row in statement["data"]:
            cell = dict(zip(headers, row, strict=True))
            mine = [o for o in operations if o["accountId"] == cell["accountid"]]
            assert cell["gi.balance"] == sum(Decimal(o["amount"]) for o in mine)
            assert cell["gi.cur_balance"] == cell["gi.balance"] + cell["opengrosspnl"]
            assert cell["gi.available_funds"] == cell["gi.cur_balance"] - cell["gi.margin_used"]
            assert cell["waived_margin"] == "N/A"
            assert cell["blockedbalance"] == 0 and type(cell["blockedbalance"]) is int
        names = [a["accountName"] for a in api.page_all("/accounts", limit=100)]
        assert len(set(names)) == len(names)
        h, history = api.report_rows(OPERATIONS, **ALL_TIME)
        balances: dict[str, Decimal] = {}
        for row in history:
            account, value, balance = (row[h.index(c)] for c in ("account", "value", "balance"))
            balances[account] = balances.get(account, Decimal(0)) + value
            assert balance == balances[account]
        assert len(history) == len(operations)


def test_trading_operations_carry_position_pnl_and_fees() -> None:
    with logged_in(**SMALL) as (api, sim):
        h, trade_rows = api.report_rows(TRADES, **ALL_TIME)
        fills = {row[h.index("tradeid")]: dict(zip(h, row, strict=True)) for row in trade_rows}
        e, events = api.report_rows(POSITIONS_HISTORY, **ALL_TIME)
        assert len(events) == len(trade_rows) > 500
        open_fee = {r[e.index("positionid")]: r[e.index("executionfee")] for r in events
                    if r[e.index("positionstatus")] == "Opened"}
        trading = [o for o in sim.expected_account_operations() if o["operationTypeId"] == 1]
        assert trading
        for op in trading:
            close = fills[op["tradeId"]]
            assert close["orderid"] == op["orderId"]
            assert op["amount"] == close["profit"] + close["executionfee"] + open_fee[
                op["positionId"]]
        for fill in fills.values():
            assert fill["tradevolume"] == fill["amount"] * fill["lot_size"] * fill["price"]
            exact = fill["tradevolume"] * fill["crossprice"]
            assert abs(fill["purchaseprice"] - exact) <= Decimal("0.005")
            assert fill["operation"] in ("Buy", "Sell")


def test_advance_reveals_fills_and_closes_positions() -> None:
    with logged_in(**SMALL) as (api, sim):
        _, before = api.report(OPEN_POSITIONS)
        h = before["headers"]
        open_ids = {row[h.index("positionid")] for row in before["data"]}
        state = api.sim("POST", "/_sim/advance", seconds=14 * 86_400)
        assert state["clock"].startswith("2025-02-14T12:00:00")
        assert api.get("/assets")[0] == 401  # two weeks outlive the access token
        api.login()
        _, after = api.report(OPEN_POSITIONS)
        still_open = {row[h.index("positionid")] for row in after["data"]}
        closed = open_ids - still_open
        assert closed
        e, history = api.report_rows(POSITIONS_HISTORY, **ALL_TIME)
        closes = {r[e.index("positionid")] for r in history
                  if r[e.index("positionstatus")] == "Closed"}
        assert closed <= closes
        api.sim("POST", "/_sim/reset")
        assert sim.state()["clock_ms"] == sim.config.start_ms
        assert api.get("/assets")[0] == 401  # reset forgets tokens


def test_same_seed_gives_same_bytes() -> None:
    def fetch(seed: int) -> list[bytes]:
        with logged_in(seed=seed, **SMALL) as (api, _):
            return [api.call("GET", path, params)[2] for path, params in (
                ("/users", {}), ("/accounts", {}), ("/accountOperations", {}),
                ("/reports/117", ALL_TIME), ("/reports/119", {}), ("/reports/150", ALL_TIME),
            )]

    first = fetch(42)
    assert first == fetch(42)
    assert all(a != b for a, b in zip(first, fetch(43), strict=True))


def test_expected_data_equals_http() -> None:
    with logged_in(**SMALL) as (api, sim):
        assert api.page_all("/accounts", limit=4) == sim.expected_accounts()
        assert api.page_all("/accountOperations", limit=250) == sim.expected_account_operations()
        window = {"startDate": sim.config.start_ms - 20 * 86_400_000,
                  "endDate": sim.config.start_ms - 5 * 86_400_000}
        ops = api.page_all("/accountOperations", limit=1000, **window)
        assert ops == sim.expected_account_operations(window["startDate"], window["endDate"])
        assert ops and all(window["startDate"] <= o["createdAt"] <= window["endDate"]
                           for o in ops)
        for name in REPORT_COLUMNS:
            params = {"assetName": "USD"} if name == STATEMENT_CCY else {}
            status, report = api.report(name, limit=1000, **window, **params)
            assert status == 200
            headers, rows = sim.expected_report(name, window["startDate"], window["endDate"])
            assert report == {"headers": headers, "data": rows}
            assert headers == REPORT_COLUMNS[name]
            assert rows, name


def test_money_is_served_as_exact_two_decimal_numbers() -> None:
    with logged_in(**SMALL) as (api, _):
        _, _, raw = api.call("GET", "/accountOperations", {"limit": 1000})
        amounts = re.findall(rb'"amount":(-?[0-9.eE+]+)', raw)
        assert amounts and all(re.fullmatch(rb"-?\d+(\.\d{1,2})?", a) for a in amounts)
        assert not re.search(rb'"amount":-?0\.0[,}]', raw)  # zero is the integer 0


def test_report_times_are_written_in_report_timezone() -> None:
    # Nicosia changes its clocks at 01:00Z on 2024-03-31 and 2024-10-27: rows on both sides of both
    zone = ZoneInfo("Europe/Nicosia")
    moments = [datetime(2024, 3, 31, 1, tzinfo=UTC) + timedelta(seconds=s) for s in (-1, 0)]
    moments += [datetime(2024, 10, 27, 1, tzinfo=UTC) + timedelta(minutes=m) for m in (-90, -30, 30, 90)]
    sim = TraderEvolutionSimulator(TraderEvolutionSimConfig(
        users=2, positions_per_account=10, sim_start=datetime(2024, 11, 1, tzinfo=UTC), history_days=240,
        report_timezone="Europe/Nicosia", events_at=tuple(moments)))
    headers, rows = sim.expected_report(TRADES, *ALL_TIME.values())
    instants = sim.expected_trade_instants(*ALL_TIME.values())
    assert len(rows) == len(instants) > len(moments) and set(moments) <= set(instants.values())
    for row in rows:
        local = instants[row[headers.index("tradeid")]].astimezone(zone)
        assert row[headers.index("time")] == local.strftime("%d.%m.%Y %H:%M:%S")
    pinned = sorted(r[headers.index("time")] for r in rows if instants[r[headers.index("tradeid")]] in moments)
    assert pinned == ["27.10.2024 02:30:00", "27.10.2024 03:30:00", "27.10.2024 03:30:00", "27.10.2024 04:30:00",
                      "31.03.2024 02:59:59", "31.03.2024 04:00:00"]


def test_unknown_report_timezone_and_misplaced_events_are_refused() -> None:
    with pytest.raises(ValueError, match="report_timezone"):
        TraderEvolutionSimConfig(report_timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="events_at"):
        TraderEvolutionSimConfig(events_at=(datetime(2020, 1, 1, tzinfo=UTC),))
