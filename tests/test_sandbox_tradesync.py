"""Behaviour of the Tradesync simulator over real HTTP (contract section 8)."""

from __future__ import annotations

import asyncio
import base64
import http.client
import itertools
import json
import socket
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from exporter.sandbox._sim_base import ALL_FAULTS, run_simulator_in_thread, serve
from exporter.sandbox.tradesync import (
    DRIFT_KINDS,
    TradesyncSimConfig,
    TradesyncSimulator,
    tradesync_simulator,
)

AUTH = "Basic " + base64.b64encode(b"sim-key:sim-secret").decode()


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    @property
    def json(self) -> Any:
        # parse_float=Decimal keeps the exact number text, as the exporter must.
        return json.loads(self.body, parse_float=Decimal)


def call(base: str, path: str, *, auth: str | None = AUTH, method: str = "GET", data: bytes | None = None,
         headers: dict[str, str] | None = None) -> Reply:
    req = urllib.request.Request(base + path, method=method, data=data, headers=dict(headers or {}))
    if auth is not None:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return Reply(resp.status, dict(resp.headers), resp.read())
    except urllib.error.HTTPError as err:
        return Reply(err.code, dict(err.headers), err.read())


def walk(base: str, path: str, limit: int = 1000, order: str = "asc") -> Iterator[dict[str, Any]]:
    """Keyset walk as the contract's recipe describes it."""
    sep = "&" if "?" in path else "?"
    last_id = None
    while True:
        cursor = "" if last_id is None else f"&last_id={last_id}"
        page = call(base, f"{path}{sep}order={order}&limit={limit}{cursor}").json
        yield from page["data"]
        if page["meta"]["count"] < page["meta"]["limit"] or page["meta"]["last_id"] is None:
            return
        last_id = page["meta"]["last_id"]


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, TradesyncSimulator]]:
    with tradesync_simulator(rate_limit_rps=0) as pair:
        yield pair


@pytest.fixture
def fresh() -> Iterator[tuple[str, TradesyncSimulator]]:
    """A private simulator for tests that flip behaviour knobs or move the clock."""
    with tradesync_simulator(rate_limit_rps=0, trades_per_account=20) as pair:
        yield pair


# --------------------------------------------------------------------------- auth and errors


@pytest.mark.parametrize(
    ("auth", "status", "code"),
    [
        (None, 401, "AUTHORISATION_FAILED"),
        ("Bearer abc", 401, "AUTHORISATION_FAILED"),
        ("Basic !!!not-base64", 401, "AUTHORISATION_FAILED"),
        ("Basic " + base64.b64encode(b"no-colon").decode(), 401, "AUTHORISATION_FAILED"),
        ("Basic " + base64.b64encode(b"sim-key:wrong").decode(), 401, "NOT_AUTHORISED"),
        ("Basic " + base64.b64encode(b"nobody:sim-secret").decode(), 401, "NOT_AUTHORISED"),
    ],
)
def test_auth_failures(server: tuple[str, TradesyncSimulator], auth: str | None, status: int, code: str) -> None:
    reply = call(server[0], "/accounts", auth=auth)
    assert reply.status == status
    assert reply.json == {"result": "fail", "status": status, "code": code,
                          "message": {"AUTHORISATION_FAILED": "Authorisation header invalid",
                                      "NOT_AUTHORISED": "Authorisation failed"}[code], "data": []}


def test_forbidden_key_gets_403() -> None:
    keys = {"sim-key": "sim-secret", "ro": "pw"}
    with tradesync_simulator(api_keys=keys, forbidden_keys=frozenset({"ro"}), rate_limit_rps=0) as (base, _):
        reply = call(base, "/accounts", auth="Basic " + base64.b64encode(b"ro:pw").decode())
        assert (reply.status, reply.json["code"]) == (403, "FORBIDDEN")
        assert call(base, "/accounts").status == 200


def test_404_405_415_and_trailing_slash(server: tuple[str, TradesyncSimulator]) -> None:
    base, sim = server
    assert call(base, "/nope").json["code"] == "NOT_FOUND"
    assert call(base, "/accounts/1/2/3").status == 404
    assert call(base, "/accounts/abc").status == 404
    assert call(base, "/accounts/999").status == 404
    reply = call(base, "/accounts", method="POST", data=b"{}", headers={"Content-Type": "application/json"})
    assert (reply.status, reply.json["code"], reply.headers.get("Allow")) == (405, "METHOD_NOT_ALLOWED", "GET")
    assert call(base, "/trades/5", method="DELETE").status == 405
    reply = call(base, "/accounts", data=None, headers={"Content-Type": "text/plain"})
    assert reply.status == 200  # no body: Content-Type does not matter
    reply = call(base, "/accounts", method="GET", data=b"x=1", headers={"Content-Type": "text/plain"})
    assert (reply.status, reply.json["code"]) == (415, "INVALID_CONTENT_TYPE")
    reply = call(base, "/accounts", method="GET", data=b"{}", headers={"Content-Type": "application/json"})
    assert reply.status == 200
    first = int(sim.account_ids()[0])
    assert call(base, f"/accounts/{first}/").json["data"]["id"] == first
    assert call(base, "/accounts/?limit=1").json["meta"]["count"] == 1


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ("/accounts?limit=0", "limit"), ("/accounts?limit=abc", "limit"), ("/accounts?limit=1.5", "limit"),
        ("/accounts?limit=", "limit"), ("/accounts?order=ASC", "order"), ("/accounts?order=up", "order"),
        ("/accounts?last_id=-1", "last_id"), ("/accounts?last_id=x", "last_id"), ("/accounts?limit=+5", "limit"),
        ("/trades?account_id=abc", "account_id"), ("/trades?account_ids=1,,2", "account_ids"),
        ("/trades?ids=1;2", "ids"), ("/trades?id=1e3", "id"), ("/trades?state=pending", "state"),
        ("/broker-servers?application=mt6", "application"),
        ("/analyses/1241400/dailies?start_date=2025-13-01", "start_date"),
        ("/analyses/1241400/dailies?start_date=2025-01-10&end_date=2025-01-01", "start_date"),
        ("/analyses/1241400/monthlies?end_date=31-01-2025", "end_date"),
    ],
)
def test_validation_422(server: tuple[str, TradesyncSimulator], path: str, bad: str) -> None:
    reply = call(server[0], path)
    assert reply.status == 422
    body = reply.json
    assert (body["result"], body["code"], body["message"], body["data"]) == (
        "fail", "VALIDATION_FAIL", "Input validation error", [])
    assert list(body["errors"]) == [bad]


def test_unknown_params_are_ignored_and_huge_integers_are_safe(server: tuple[str, TradesyncSimulator]) -> None:
    base, _ = server
    reply = call(base, "/accounts?page=3&from=x&state=bogus&limit=2")
    assert reply.status == 200 and reply.json["meta"]["count"] == 2
    assert call(base, "/accounts?limit=99999999999999999999999").json["meta"]["limit"] == 1000
    assert call(base, "/accounts?order=asc&last_id=99999999999999999999999").json["meta"]["count"] == 0
    assert call(base, "/trades?account_ids=-5,99999999999999999999999").json["meta"]["count"] == 0


def test_check_order(fresh: tuple[str, TradesyncSimulator]) -> None:
    base, sim = fresh
    sim.config.maintenance = True
    reply = call(base, "/nope", auth=None)
    assert (reply.status, reply.json["result"], reply.json["code"]) == (503, "error", "MAINTENANCE_MODE")
    sim.config.maintenance = False
    sim.config.fail_every_n = 1
    assert call(base, "/nope", auth=None).status == 401  # auth before faults
    assert call(base, "/nope").status == 500  # faults before routing
    sim.config.fail_every_n = 0
    assert call(base, "/nope?limit=0").status == 404  # routing before validation
    assert call(base, "/accounts?limit=0", data=b"a", headers={"Content-Type": "text/plain"}).status == 415


def test_code_case_knob(fresh: tuple[str, TradesyncSimulator]) -> None:
    base, sim = fresh
    sim.config.code_case = "lower"
    assert call(base, "/nope").json["code"] == "not_found"
    sim.config.code_case = "mixed"
    codes = {call(base, "/nope").json["code"] for _ in range(4)}
    assert codes == {"not_found", "NOT_FOUND"}


# --------------------------------------------------------------------------- envelope and pagination


def test_envelope_meta_and_empty_page(server: tuple[str, TradesyncSimulator]) -> None:
    base, sim = server
    ids = [int(i) for i in sim.account_ids()]
    page = call(base, "/accounts").json
    assert list(page) == ["result", "status", "meta", "data"]
    assert page["meta"] == {"count": 25, "limit": 1000, "order": "desc", "last_id": ids[0]}
    assert [a["id"] for a in page["data"]] == ids[::-1]
    empty = call(base, f"/accounts?order=asc&last_id={ids[-1]}").json
    assert empty == {"result": "success", "status": 200,
                     "meta": {"count": 0, "limit": 1000, "order": "asc", "last_id": None}, "data": []}
    single = call(base, f"/trades/{page['data'][0]['id']}")
    assert single.status == 404  # an account id is not a trade id
    one = call(base, f"/accounts/{ids[3]}").json
    assert list(one) == ["result", "status", "data"] and one["data"]["id"] == ids[3]


def test_asc_desc_last_id_semantics(server: tuple[str, TradesyncSimulator]) -> None:
    base, sim = server
    ids = [int(i) for i in sim.account_ids()]
    asc = call(base, f"/accounts?order=asc&limit=3&last_id={ids[4]}").json
    assert [a["id"] for a in asc["data"]] == ids[5:8]
    assert asc["meta"] == {"count": 3, "limit": 3, "order": "asc", "last_id": ids[7]}
    desc = call(base, f"/accounts?order=desc&limit=3&last_id={ids[4]}").json
    assert [a["id"] for a in desc["data"]] == [ids[3], ids[2], ids[1]]
    assert desc["meta"]["last_id"] == ids[1]
    gap = ids[4] + 1 if ids[4] + 1 != ids[5] else ids[4]  # a cursor between ids works too
    assert call(base, f"/accounts?order=asc&limit=1&last_id={gap}").json["data"][0]["id"] == ids[5]
    assert [a["id"] for a in walk(base, "/accounts", limit=7)] == ids
    assert [a["id"] for a in walk(base, "/accounts", limit=5, order="desc")] == ids[::-1]  # 25 = 5 x 5: empty tail


def test_limit_clamp_and_strict() -> None:
    with tradesync_simulator(rate_limit_rps=0, max_limit=10) as (base, sim):
        page = call(base, "/accounts?limit=5000").json
        assert page["meta"]["limit"] == 10 and page["meta"]["count"] == 10
        assert call(base, "/accounts").json["meta"]["limit"] == 10
        sim.config.strict_limit = True
        reply = call(base, "/accounts?limit=11")
        assert reply.status == 422 and "limit" in reply.json["errors"]
        assert call(base, "/accounts?limit=10").status == 200


def test_trade_filters(server: tuple[str, TradesyncSimulator]) -> None:
    base, sim = server
    trades = list(sim.expected_trades())
    by_account: dict[int, list[int]] = defaultdict(list)
    for t in trades:
        by_account[t["account_id"]].append(t["id"])
    a, b = sorted(by_account)[2:4]
    assert [t["id"] for t in walk(base, f"/trades?account_id={a}", limit=50)] == by_account[a]
    both = [t["id"] for t in walk(base, f"/trades?account_ids={b},{a},999")]
    assert both == sorted(by_account[a] + by_account[b])
    assert call(base, f"/trades?account_id={a}&account_ids={b}").json["meta"]["count"] == 0
    opened = [t["id"] for t in trades if t["state"] == "open"]
    assert [t["id"] for t in walk(base, "/trades?state=open")] == opened
    closed_a = [t["id"] for t in trades if t["state"] == "closed" and t["account_id"] == a]
    assert [t["id"] for t in walk(base, f"/trades?state=closed&account_id={a}")] == closed_a
    picked = [trades[5]["id"], trades[9]["id"]]
    assert [t["id"] for t in walk(base, f"/trades?ids={picked[1]},{picked[0]},1")] == picked
    assert [t["id"] for t in walk(base, f"/trades?id={picked[0]}")] == picked[:1]
    nothing = call(base, "/trades?account_id=1").json
    assert nothing["meta"] == {"count": 0, "limit": 1000, "order": "desc", "last_id": None}


def test_other_lists_and_single_resources(server: tuple[str, TradesyncSimulator]) -> None:
    base, sim = server
    first = int(sim.account_ids()[0])
    brokers = call(base, "/brokers").json["data"]
    assert {tuple(b) for b in brokers} == {("id", "created_at", "updated_at", "name", "application")}
    servers = call(base, "/broker-servers?application=mt4").json["data"]
    assert servers and all(s["application"] == "mt4" and "broker_id" in s for s in servers)
    analyses = list(walk(base, "/analyses", limit=10))
    assert [x["account_id"] for x in analyses] == [int(i) for i in sim.account_ids()]
    assert call(base, f"/analyses/{first}").json["data"]["account_id"] == first
    dailies = list(walk(base, f"/analyses/{first}/dailies", limit=30))
    assert dailies and len({d["date"] for d in dailies}) == len(dailies)
    window = call(base, f"/analyses/{first}/dailies?start_date=2025-01-10&end_date=2025-01-12").json["data"]
    assert [d["date"] for d in window] == ["2025-01-12", "2025-01-11", "2025-01-10"]
    months = call(base, f"/analyses/{first}/monthlies?order=asc").json["data"]
    assert [m["date"] for m in months][-1] == "2025-01-01"
    assert call(base, "/analyses/1/dailies").status == 404


# --------------------------------------------------------------------------- data


def test_ids_and_timestamps_follow_the_contract(server: tuple[str, TradesyncSimulator]) -> None:
    base, sim = server
    ids = [int(i) for i in sim.account_ids()]
    assert ids[0] == 1_241_400 and all(1 <= b - a <= 5 for a, b in itertools.pairwise(ids))
    trades = list(walk(base, "/trades"))
    tids = [t["id"] for t in trades]
    assert tids[0] == 37_000_000 and all(1 <= b - a <= 20 for a, b in itertools.pairwise(tids))
    assert [t["created_at"] for t in trades] == sorted(t["created_at"] for t in trades)
    assert all(len(t["created_at"]) == 20 and t["created_at"].endswith("Z") for t in trades)
    deposits = [t for t in trades if t["type"] in ("deposit", "withdrawal")]
    assert all(t["symbol"] == "" and t["lots"] == 0 and t["open_time"] == t["close_time"] for t in deposits)
    assert {t["account_id"] for t in trades if t["comment"] == "Initial deposit"} == set(ids)
    assert {t["symbol"].rstrip(".rmpo") for t in trades if t["type"] in ("buy", "sell")} <= {
        "EURUSD", "GBPUSD", "USDJPY", "XAUUSD", "US30", "BTCUSD"}
    assert all(a["password"].startswith("sim-") for a in walk(base, "/accounts"))


def test_expected_accounts_and_trades_match_http(server: tuple[str, TradesyncSimulator]) -> None:
    base, sim = server
    assert list(walk(base, "/accounts", limit=7)) == list(sim.expected_accounts())
    assert list(walk(base, "/trades", limit=1000)) == list(sim.expected_trades())


def test_money_is_exact_and_zero_is_integer(server: tuple[str, TradesyncSimulator]) -> None:
    base, sim = server
    ids = sim.account_ids()
    body = call(base, f"/accounts/{ids[0]}").body
    assert b'"balance":99999999999.99' in body
    second = call(base, f"/accounts/{ids[1]}")
    assert b'"credit":0.1,' in second.body and b'"open_trades_lots":0.07,' in second.body
    assert second.json["data"]["credit"] == Decimal("0.1")
    expected = list(sim.expected_accounts())
    assert expected[0]["balance"] == Decimal("99999999999.99")
    assert expected[1]["open_trades_lots"] == Decimal("0.07")
    page = call(base, "/accounts").body
    assert b'"credit":0,' in page and b'"credit":0.0,' not in page


def test_consistency_rules(server: tuple[str, TradesyncSimulator]) -> None:
    base, sim = server
    rows: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for t in walk(base, "/trades"):
        rows[t["account_id"]].append(t)
    for acc in walk(base, "/accounts"):
        mine = rows[acc["id"]]
        closed = [t for t in mine if t["state"] == "closed"]
        opened = [t for t in mine if t["state"] == "open"]
        net = sum((t["profit"] + t["commission"] + t["swap"] for t in closed), Decimal(0))
        floating = sum((t["profit"] + t["commission"] + t["swap"] for t in opened), Decimal(0))
        assert acc["balance"] == net
        assert acc["equity"] == acc["balance"] + acc["credit"] + floating
        assert acc["free_margin"] == acc["equity"] - acc["used_margin"]
        assert acc["open_trades"] == len(opened)
        assert acc["open_trades_lots"] == sum((t["lots"] for t in opened), Decimal(0))
        trade_pnl = [t["profit"] + t["commission"] + t["swap"] for t in closed if t["type"] in ("buy", "sell")]
        assert acc["total_profit"] == sum(trade_pnl, Decimal(0))
        assert all(t["close_price"] is None and t["close_time"] is None for t in opened)
        fx = [t for t in closed if t["type"] in ("buy", "sell") and t["symbol"][:6] in ("EURUSD", "GBPUSD")]
        assert all(t["commission"] == Decimal("-7.00") * t["lots"] for t in fx)
    first = int(sim.account_ids()[3])
    analysis = call(base, f"/analyses/{first}").json["data"]
    account = call(base, f"/accounts/{first}").json["data"]
    assert analysis["profit_loss"] == account["total_profit"]
    daily = call(base, f"/analyses/{first}/dailies?limit=1").json["data"][0]
    assert daily["running_balance"] == account["balance"]


def test_determinism_same_seed_same_bytes() -> None:
    paths = ["/accounts?order=asc", "/trades?order=asc&limit=500", "/analyses", "/trades?state=open"]
    bodies = []
    for _ in range(2):
        sim = TradesyncSimulator(TradesyncSimConfig(rate_limit_rps=0, trades_per_account=30))
        with run_simulator_in_thread(sim.make_app) as base:
            bodies.append([call(base, p).body for p in paths])
    assert bodies[0] == bodies[1]
    other = TradesyncSimulator(TradesyncSimConfig(seed=7, rate_limit_rps=0, trades_per_account=30))
    with run_simulator_in_thread(other.make_app) as base:
        assert call(base, paths[0]).body != bodies[0][0]


@pytest.mark.parametrize("drift", DRIFT_KINDS)
def test_schema_drift(drift: str) -> None:
    with tradesync_simulator(rate_limit_rps=0, trades_per_account=2, drift=drift, accounts=10) as (base, sim):
        served = list(walk(base, "/accounts", limit=4))
        assert served == list(sim.expected_accounts())
        low, high = served[4], served[5]
        if drift == "new_field":
            assert "risk_score" not in low and isinstance(high["risk_score"], Decimal | int)
        elif drift == "null_field":
            assert low["leverage"] in (30, 100, 200, 500) and high["leverage"] is None
        elif drift == "int_gets_decimals":
            assert isinstance(low["open_trades"], int) and high["open_trades"] % 1 == Decimal("0.5")
        elif drift == "typed_fields":  # every account; kyc_level turns from a number into a string
            assert isinstance(low["kyc_level"], int) and high["kyc_level"].startswith("level-")
            assert all(isinstance(r["margin_call_level"], Decimal | int) and isinstance(r["limits"], dict)
                       for r in served)
            # an account on its own carries the same exact texts
            assert json.loads(call(base, f"/accounts/{high['id']}").body, parse_float=Decimal)["data"] == high
        else:
            assert isinstance(low["balance"], Decimal) and high["balance"] == "N/A"


# --------------------------------------------------------------------------- clock


def test_clock_advance_closes_trades_and_reveals_accounts() -> None:
    with tradesync_simulator(rate_limit_rps=0, trades_per_account=20, new_accounts_per_hour=10) as (base, sim):
        before_ids = [a["id"] for a in walk(base, "/accounts")]
        opened = list(walk(base, "/trades?state=open"))
        assert len(opened) > 1
        visible_before = call(base, "/_sim/state").json["trades"]
        state = json.loads(urllib.request.urlopen(
            urllib.request.Request(base + "/_sim/advance?seconds=3600", method="POST")).read())
        assert state["clock"] == "2025-01-31T13:00:00Z" and state["accounts"] == len(before_ids) + 10
        after_ids = [a["id"] for a in walk(base, "/accounts")]
        assert after_ids[: len(before_ids)] == before_ids and min(after_ids[len(before_ids):]) > max(before_ids)
        sim.advance(timedelta(days=11).total_seconds())  # longer than the longest hold time
        assert call(base, "/_sim/state").json["trades"] > visible_before
        perpetual = int(sim.account_ids()[1])
        for trade in opened:
            now = call(base, f"/trades/{trade['id']}").json["data"]
            if trade["account_id"] == perpetual:
                assert now["state"] == "open"
                continue
            assert now["state"] == "closed" and now["close_time"] is not None and now["close_price"] is not None
            assert now["updated_at"] != trade["updated_at"] and now["created_at"] == trade["created_at"]
        assert list(walk(base, "/trades")) == list(sim.expected_trades())
        urllib.request.urlopen(urllib.request.Request(base + "/_sim/reset", method="POST")).read()
        assert [a["id"] for a in walk(base, "/accounts")] == before_ids
        assert call(base, "/_sim/state").json["requests_total"] == 1


def test_expected_accounts_at_an_explicit_clock() -> None:
    sim = TradesyncSimulator(TradesyncSimConfig(trades_per_account=0, new_accounts_per_hour=4, accounts=5))
    later = sim.clock + timedelta(hours=2)
    assert len(list(sim.expected_accounts())) == 5
    assert [a["id"] for a in sim.expected_accounts(later)] == [int(i) for i in sim.account_ids(later)]
    assert len(sim.account_ids(later)) == 13


# --------------------------------------------------------------------------- chaos


def test_every_fault_kind_is_observable(fresh: tuple[str, TradesyncSimulator]) -> None:
    base, sim = fresh
    sim.config.fail_every_n = 1
    seen: dict[str, Any] = {}
    for kind in ALL_FAULTS:
        sim.config.fault_kinds = (kind,)
        try:
            seen[kind] = call(base, "/accounts")
        except (http.client.RemoteDisconnected, ConnectionError, urllib.error.URLError) as exc:
            seen[kind] = exc
    assert (seen["500"].status, seen["500"].json["result"], seen["500"].json["code"]) == (500, "error", "ERROR")
    assert (seen["503"].status, seen["503"].json["code"]) == (503, "MAINTENANCE_MODE")
    assert (seen["429"].status, seen["429"].json["code"]) == (429, "TOO_MANY_REQUESTS")
    assert "Retry-After" not in seen["429"].headers
    assert seen["429-retry-after"].status == 429 and seen["429-retry-after"].headers["Retry-After"] in ("0", "1")
    assert isinstance(seen["drop"], Exception)
    html = seen["html502"]
    assert html.status == 502 and html.headers["Content-Type"].startswith("text/html") and b"nginx" in html.body
    state = call(base, "/_sim/state").json  # control routes are never faulted
    assert state["faults_injected"] == len(ALL_FAULTS)
    assert state["responses_by_status"] == {"429": 2, "500": 1, "502": 1, "503": 1}  # a drop has no status


def test_error_rate_replays_after_reset(fresh: tuple[str, TradesyncSimulator]) -> None:
    base, sim = fresh
    sim.config.error_rate = 0.3
    sim.config.fault_kinds = ("500", "503")

    def run() -> list[int]:
        return [call(base, "/accounts?limit=1").status for _ in range(30)]

    first = run()
    assert 0 < first.count(200) < 30 and set(first) <= {200, 500, 503}
    assert call(base, "/_sim/state").json["faults_injected"] == 30 - first.count(200)
    urllib.request.urlopen(urllib.request.Request(base + "/_sim/reset", method="POST")).read()
    assert run() == first


def test_rate_limit_token_bucket() -> None:
    keys = {"sim-key": "sim-secret", "other": "pw"}
    with tradesync_simulator(rate_limit_rps=0.5, rate_limit_burst=3, api_keys=keys) as (base, sim):
        statuses = [call(base, "/brokers").status for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        reply = call(base, "/brokers")
        assert reply.json == {"result": "fail", "status": 429, "code": "TOO_MANY_REQUESTS",
                              "message": "Too many requests", "data": []}
        assert "Retry-After" not in reply.headers
        sim.config.retry_after_header = True
        assert int(call(base, "/brokers").headers["Retry-After"]) >= 1
        other = "Basic " + base64.b64encode(b"other:pw").decode()
        assert call(base, "/brokers", auth=other).status == 200  # one bucket per key
        sim.config.fail_every_n = 1
        assert call(base, "/brokers").json["code"] == "TOO_MANY_REQUESTS"  # the limiter answers before faults
        assert call(base, "/brokers", auth=other).status == 500


def test_latency_and_peak_in_flight() -> None:
    with tradesync_simulator(rate_limit_rps=0, latency_ms=300, trades_per_account=1) as (base, _):
        started = time.perf_counter()
        with ThreadPoolExecutor(5) as pool:
            statuses = list(pool.map(lambda _: call(base, "/brokers").status, range(5)))
        assert statuses == [200] * 5 and time.perf_counter() - started >= 0.3
        state = call(base, "/_sim/state").json
        assert state["peak_in_flight"] == 5 and state["in_flight"] == 0 and state["requests_total"] == 5


# --------------------------------------------------------------------------- scale


def test_million_accounts_page_near_the_end_and_warm_pages_match_cold_ones() -> None:
    # no time limits here: how fast the build and the warm-up run depends on the machine (bench/sim.py prints it)
    sim = TradesyncSimulator(TradesyncSimConfig(accounts=1_000_000, trades_per_account=0, rate_limit_rps=0))
    ids = sim.account_ids()
    assert len(ids) == 1_000_000
    with run_simulator_in_thread(sim.make_app) as base:
        tail = call(base, f"/accounts?order=asc&last_id={ids[-4]}").json
        assert [a["id"] for a in tail["data"]] == [int(i) for i in ids[-3:]]
        page = call(base, f"/accounts?order=desc&last_id={ids[-1]}").json
        assert page["meta"]["count"] == 1000 and page["data"][0]["id"] == ids[-2]
        assert page["data"][-1]["id"] == ids[-1001]
        for row in page["data"]:
            assert row["free_margin"] == row["equity"] - row["used_margin"]
            if row["open_trades"] == 0:  # nothing floating: equity is balance plus credit
                assert row["equity"] == row["balance"] + row["credit"] and row["used_margin"] == 0
    assert sim.warm(max_bytes=3 * 2**20) >= 3
    cold = TradesyncSimulator(TradesyncSimConfig(accounts=1_000_000, trades_per_account=0, rate_limit_rps=0))
    second_page = f"/accounts?order=asc&limit=1000&last_id={ids[999]}"
    with run_simulator_in_thread(sim.make_app) as warm_base, run_simulator_in_thread(cold.make_app) as cold_base:
        assert call(warm_base, second_page).body == call(cold_base, second_page).body


def test_serve_runs_until_cancelled() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario() -> int:
        sim = TradesyncSimulator(TradesyncSimConfig(accounts=2, trades_per_account=0))
        task = asyncio.create_task(serve(sim.make_app(), "127.0.0.1", port))
        for _ in range(100):
            await asyncio.sleep(0.01)
            try:
                status = await asyncio.to_thread(lambda: call(f"http://127.0.0.1:{port}", "/brokers").status)
                break
            except urllib.error.URLError:
                continue
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return status

    assert asyncio.run(scenario()) == 200
