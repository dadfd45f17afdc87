"""TraderEvolution BackOffice REST API: token login, bare-array lists, saved reports.

Streams:
- ``/accounts`` (limit/offset) feeds ``accounts``;
- the *Account Statement Report* (one row per account, live engine values) feeds the cross-source
  ``balances`` and ``equity`` tables (same columns as Tradesync, nulls where TraderEvolution has no
  such value) plus every raw report column under its sanitised name;
- ``/accountOperations`` fans out per account and per date window (``account_operations``);
- the *Trades Report* in date windows feeds ``trades``.

Reports are resolved by name (ids differ per installation). Rate limiting blocks the whole token
after repeated violations, and the server answers 429 ``2.147.1.27`` both to a violation and to a
blocked token. So requests are paced per collection by a probing pacer (:mod:`exporter.probing`):
after a 429 it slows down and, after a short wait, sends one request alone; only when that one is
refused too is the token taken as blocked, and every request of the source waits
``block_wait_seconds`` (x1..x4 when blocked again right after) instead of hammering.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

import msgspec
import pyarrow as pa

from ..errors import AuthError, ConfigError, DataError
from ..estimate import Coverage
from ..http import ClientSettings, HttpClient, ProbeSettings, Response
from ..jobs import SourceOptions, option
from ..schema import Column, RecordSchema, parse_timestamp, sanitize_column_names, time_zone
from ..walk import Emit, OffsetLists, Page, RecordsDecoder, Target
from .base import Connection, Dataset, Projection, Source, StreamDef, Walk, as_is, stamped
from .canonical import BALANCE_COLUMNS, EQUITY_COLUMNS, canonical_table

API_PATH = "/proftrading/rest"
URL_FORM = f"https://<host>:8443{API_PATH}"

ERROR_MEANINGS = {
    "1.2.0.11": "wrong login or password",
    "2.0.2.4": "the user has no REST API access",
    "1.1.1.11": "token expired or invalid",
    "1.6.2.2": "a required report filter is missing",
    "2.147.1.27": "rate limit exceeded, token blocked",
}
LOGIN_FAILURES = frozenset({"1.2.0.11", "2.0.2.4"})

STATEMENT_REPORT = "Account Statement Report"
TRADES_REPORT = "Trades Report"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OPERATIONS_REPORT = "Account operation report (settled and unsettled)"
# the report names the kind of an operation; the list route gives its id (contract 5.3)
OPERATION_TYPE_IDS = {"trading": 1, "deposit": 2, "withdrawal": 3, "adjustment": 12, "dividends": 13,
                      "transfer": 17}

ACCOUNT = RecordSchema(
    "traderevolution account",
    (
        Column("id", "int"),
        Column("account_name", "str", key="accountName"),
        Column("user_id", "int", key="userId"),
        Column("login", "str"),
        Column("currency", "str"),
        Column("type", "int"),
        Column("status", "int"),
        Column("mode", "int"),
        Column("created_at", "timestamp", key="createdAt"),
    ),
)

OPERATION = RecordSchema(
    "traderevolution account operation",
    (
        Column("id", "int"),
        Column("account_id", "int", key="accountId"),
        Column("operation_type_id", "int", key="operationTypeId"),
        Column("amount", "decimal"),
        Column("currency", "str"),
        Column("balance", "decimal"),
        Column("created_at", "timestamp", key="createdAt"),
        Column("value_date", "timestamp", key="valueDate"),
        Column("frontend_comment", "str", key="frontendComment"),
        Column("order_id", "int", key="orderId"),
        Column("position_id", "int", key="positionId"),
        Column("trade_id", "int", key="tradeId"),
    ),
)

# Report cells: text columns are declared; every other known column is money or a quantity.
STATEMENT_TEXT = {"accountname", "login", "groupname", "accountcurrency", "omnibusname"}
STATEMENT_COLUMNS = [
    "accountname",
    "login",
    "groupname",
    "gi.balance",
    "blockedbalance",
    "opengrosspnl",
    "gi.cur_balance",
    "unsettled_deposit",
    "gi.available_funds",
    "gi.margin_used",
    "gi.available_margin",
    "gi.margin_warning",
    "gi.maintain_margin",
    "gi.risk_lvl",
    "gi.withdrawal_available",
    "gi.cur_margin",
    "gi.today_released_pnl",
    "gi.stock_value",
    "stock_value",
    "accountcurrency",
    "cash_balance",
    "unsettled_cash",
    "stock_req",
    "option_value",
    "stocks_liquidity",
    "option_premium_req",
    "collateral",
    "omnibusname",
    "waived_margin",
    "warning_margin",
    "warning_margin_req",
    "margin_before_warning",
    "stop_out_value",
    "credit_value",
    "accountid",
    "blocked_for_fixed_income",
    "fixed_income_value",
    "fixed_income_orders_req",
]
TRADES_TYPES = {
    "account": "str",
    "instrumentname": "str",
    "orderid": "int",
    "tradeid": "int",
    "externalid": "str",
    "routename": "str",
    "operation": "str",
    "time": "timestamp",
    "price": "decimal",
    "amount": "decimal",
    "crossprice": "decimal",
    "profit": "decimal",
    "executionfee": "decimal",
    "extprice": "decimal",
    "tradevolume": "decimal",
    "purchaseprice": "decimal",
    "exchange": "str",
    "type": "str",
    "rebates": "decimal",
    "expyear": "int",
    "expmonth": "int",
    "expday": "int",
    "derivativetype": "str",
    "strikeprice": "decimal",
    "external_order_id": "str",
    "trades_bought": "decimal",
    "trades_sold": "decimal",
    "symbol_type": "str",
    "tradingmode": "str",
    "tradableinstrumentid": "int",
    "clientorderid": "str",
    "execvenue": "str",
    "description": "str",
    "leverage": "decimal",
    "lot_size": "decimal",
    "counter_currency": "str",
}
# the Tradesync-shaped columns of balances/equity and the report column each comes from
CANONICAL_FROM_STATEMENT = {
    "account_id": "accountid",
    "currency": "accountcurrency",
    "balance": "gi_balance",
    "credit": "credit_value",
    "equity": "gi_cur_balance",
    "free_margin": "gi_available_margin",
    "used_margin": "gi_margin_used",
}
NULL_TOKENS = frozenset({"N/A", "n/a", "-", ""})


def java_time_format(pattern: str) -> str:
    """``dd.MM.yyyy HH:mm:ss`` (Java / moment style, as TraderEvolution configures it) -> strptime.

    >>> java_time_format("DD-MM-YYYY HH:mm:ss.SSS")
    '%d-%m-%Y %H:%M:%S.%f'
    """
    tokens = [
        ("yyyy", "%Y"),
        ("YYYY", "%Y"),
        ("dd", "%d"),
        ("DD", "%d"),
        ("MM", "%m"),
        ("HH", "%H"),
        ("hh", "%I"),
        ("mm", "%M"),
        ("ss", "%S"),
        ("SSS", "%f"),
        ("a", "%p"),
    ]
    out, i = [], 0
    while i < len(pattern):
        for token, directive in tokens:
            if pattern.startswith(token, i):
                out.append(directive)
                i += len(token)
                break
        else:
            out.append(pattern[i].replace("%", "%%"))
            i += 1
    return "".join(out)


def report_schema(name: str, kinds: dict[str, str], time_format: str, zone: tzinfo = UTC) -> RecordSchema:
    """Report cells: timestamps are text in ``time_format``, wall-clock times in ``zone``."""
    names = sanitize_column_names(list(kinds))
    cols = tuple(
        Column(sane, kind, fmt=time_format, zone=zone) if kind == "timestamp" else Column(sane, kind)
        for sane, kind in zip(names, kinds.values(), strict=True)
    )
    return RecordSchema(name, cols)


class _Tokens(msgspec.Struct):
    accessToken: str
    refreshToken: str
    accessTokenLifeTime: float | None = None
    refreshTokenLifeTime: float | None = None


class _Errors(msgspec.Struct):
    errors: list[Any] = []


_tokens_decoder = msgspec.json.Decoder(_Tokens)
_errors_decoder = msgspec.json.Decoder(_Errors)
_records_decoder = msgspec.json.Decoder(list[dict[str, Any]], float_hook=Decimal)
_report_decoder = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal)


def error_codes(response: Response) -> list[str]:
    try:
        return [str(e) for e in _errors_decoder.decode(response.body).errors]
    except msgspec.DecodeError:
        return []


def describe_codes(codes: list[str]) -> str:
    return ", ".join(f"{c} ({ERROR_MEANINGS[c]})" if c in ERROR_MEANINGS else c for c in codes)


class TokenAuth:
    """``POST /auth/token`` once, ``Bearer`` on every call, refresh before expiry, re-login once on 401."""

    REFRESH_MARGIN = 0.2  # refresh when 20% of the access token's life is left

    def __init__(self, login: str, password: str, *, variables: tuple[str, str, str] = (
            "TRADEREVOLUTION_BASE_URL", "TRADEREVOLUTION_LOGIN", "TRADEREVOLUTION_PASSWORD")) -> None:
        self._login = login
        self._password = password
        self._variables = variables  # where the URL, login and password came from: named in errors
        self._access: str | None = None
        self._refresh: str | None = None
        self._access_expires = 0.0
        self._refresh_expires = 0.0
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return "TokenAuth(<redacted>)"

    async def headers(self, client: HttpClient) -> dict[str, str]:
        if self._access is None or time.monotonic() >= self._access_expires:
            async with self._lock:
                if self._access is None or time.monotonic() >= self._access_expires:
                    await self._renew(client)
        return {"Authorization": f"Bearer {self._access}"}

    async def on_unauthorized(self, client: HttpClient, response: Response) -> bool:
        codes = error_codes(response)
        if LOGIN_FAILURES & set(codes):
            return False
        async with self._lock:
            self._access = None
            self._refresh = None
            await self._login_now(client)
        return True

    async def _renew(self, client: HttpClient) -> None:
        if self._refresh is not None and time.monotonic() < self._refresh_expires:
            response = await client.send_once("GET", "/auth/token/refresh", headers={"token": self._refresh})
            if response.status == 200:
                self._store(response)
                return
        await self._login_now(client)

    async def _login_now(self, client: HttpClient) -> None:
        body = {"login": self._login, "password": self._password}
        url_variable, login_variable, password_variable = self._variables
        for attempt in range(1, 6):
            response = await client.send_once("POST", "/auth/token", json=body)
            if response.status == 200:
                client.stats.logins += 1
                self._store(response)
                return
            if response.status in (401, 403):
                codes = describe_codes(error_codes(response)) or f"HTTP {response.status}"
                raise AuthError(f"TraderEvolution login failed: {codes}; "
                                f"check {login_variable} and {password_variable}")
            if response.status in (404, 405):
                # no login route there: the URL, not the credentials, is wrong (often the API path is missing)
                raise ConfigError(
                    f"TraderEvolution login: HTTP {response.status} from {_url_only(response.url)}: "
                    f"{url_variable} does not look like the BackOffice REST API; expected the form {URL_FORM}"
                    + ("" if API_PATH in response.url else f" (it lacks {API_PATH})")
                )
            if response.status not in (429, 500, 502, 503, 504):
                detail = describe_codes(error_codes(response))
                raise AuthError(f"TraderEvolution login failed: HTTP {response.status} {detail}")
            await asyncio.sleep(min(10.0, 0.5 * 2**attempt))
        raise AuthError("TraderEvolution login failed: the server kept answering with errors")

    def _store(self, response: Response) -> None:
        try:
            tokens = _tokens_decoder.decode(response.body)
        except msgspec.DecodeError as exc:
            raise AuthError(f"TraderEvolution login answered with an unexpected body: {exc}") from None
        now = time.monotonic()
        access_life = tokens.accessTokenLifeTime or 300.0
        refresh_life = tokens.refreshTokenLifeTime or 3600.0
        self._access, self._refresh = tokens.accessToken, tokens.refreshToken
        self._access_expires = now + access_life * (1 - self.REFRESH_MARGIN)
        self._refresh_expires = now + refresh_life * (1 - self.REFRESH_MARGIN)


def decode_records(response: Response) -> list[dict[str, Any]]:
    """A bare JSON array of objects (``[]`` or an empty 204 body is an empty page)."""
    if response.status == 204 or not response.body.strip():
        return []
    try:
        return _records_decoder.decode(response.body)
    except msgspec.DecodeError as exc:
        raise DataError(f"not a JSON array of objects (HTTP {response.status}): {exc}") from None


def decode_report(response: Response) -> list[dict[str, Any]]:
    """``{"headers": [...], "data": [[...]] or [{...}]}`` -> records keyed by sanitised column names."""
    if response.status == 204 or not response.body.strip():
        return []
    try:
        body = _report_decoder.decode(response.body)
    except msgspec.DecodeError as exc:
        raise DataError(f"report is not JSON (HTTP {response.status}): {exc}") from None
    headers, rows = body.get("headers"), body.get("data")
    if not isinstance(headers, list) or not isinstance(rows, list):
        raise DataError("report body lacks 'headers' or 'data'")
    names = sanitize_column_names([str(h) for h in headers])
    rename = dict(zip(headers, names, strict=True))
    out: list[dict[str, Any]] = []
    for row in rows:
        if isinstance(row, list):
            if len(row) != len(names):
                raise DataError(f"report row has {len(row)} cells for {len(names)} headers")
            out.append(dict(zip(names, row, strict=True)))
        elif isinstance(row, dict):
            out.append({rename.get(k, sanitize_column_names([str(k)])[0]): v for k, v in row.items()})
        else:
            raise DataError(f"report row is a {type(row).__name__}")
    return out


def read_error(response: Response) -> str:
    codes = error_codes(response)
    if codes:
        return describe_codes(codes)
    ctype = response.headers.get("Content-Type", "?")
    return f"{ctype}, {len(response.body)} bytes"


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def date_windows(since: datetime, until: datetime, days: int) -> list[tuple[int, int]]:
    """Inclusive ``[startDate, endDate]`` epoch-ms windows covering ``since..until`` (both included)
    without overlap.

    >>> date_windows(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 3, tzinfo=UTC), 1)
    [(1735689600000, 1735775999999), (1735776000000, 1735862400000)]
    """
    out = []
    start = since
    step = timedelta(days=days)
    while start < until:
        end = min(start + step, until)
        out.append((epoch_ms(start), epoch_ms(end) - (0 if end == until else 1)))
        start = end
    return out


def statement(canonical: tuple[str, ...]):
    """Feed of ``balances``/``equity`` from the statement report: the canonical columns first (nulls
    where TraderEvolution has no such value), then every report column as ``te_<column>``."""
    raw_names = sanitize_column_names(STATEMENT_COLUMNS)

    def feed(source: Source) -> Projection:
        def project(table: pa.Table, page: Page) -> pa.Table:
            present = set(table.column_names)
            found = {name: table.column(column) for name, column in CANONICAL_FROM_STATEMENT.items()
                     if column in present}
            arrays, names = canonical_table(canonical, source.name, page, table.num_rows, found)
            # the declared report columns in their order, then any the report gained (drift)
            for raw in [*(r for r in raw_names if r in present), *(c for c in table.column_names
                                                                   if c not in raw_names)]:
                arrays.append(table.column(raw))
                names.append(f"te_{raw}")
            return pa.Table.from_arrays(arrays, names=names)

        def written(column: str) -> tuple[str, ...]:
            """Every report column goes out as ``te_<column>``; some also as a canonical one."""
            shaped = tuple(n for n in ("account_id", *canonical) if CANONICAL_FROM_STATEMENT.get(n) == column)
            return (*shaped, f"te_{column}")

        project.written_names = written  # type: ignore[attr-defined]
        return project

    return feed


def _check_moment(text: str) -> None:
    if text:
        try:
            _parse_moment(text)
        except ValueError:
            raise ValueError(f"must be an ISO date or datetime (2025-01-31 or 2025-01-31T00:00:00+02:00), "
                             f"got {text!r}") from None


@dataclass(frozen=True)
class TraderEvolutionOptions(SourceOptions):
    since: str = option("", "history start, YYYY-MM-DD (default: since_days before now)", check=_check_moment)
    until: str = option("", "history end, ISO date or datetime (default: now)", check=_check_moment)
    since_days: int = option(90, "history length when 'since' is not set", minimum=1)
    window_days: int = option(7, "date window of one report/operations request", minimum=1)
    # one window per account by default: the fan-out costs a request per account and window,
    # and the per-collection pace (1.6/s) makes every extra window minutes on a real server
    operations_window_days: int = option(92, "date window of one account's operations request", minimum=1)
    report_datetime_format: str = option("dd.MM.yyyy HH:mm:ss", "how this server formats report times")
    # the contract leaves the zone of report cells undocumented; many back offices run on local time
    report_timezone: str = option("UTC", "IANA zone report times are written in", check=time_zone)
    operations_route: str = option(
        "auto", "account_operations from the operations report (one walk of date windows) or per account; "
        "auto: the report when GET /reports lists it", choices=("auto", "report", "per_account"))
    operations_report_window_days: int = option(7, "date window of one operations report walk", minimum=1)
    # heavy reports can think for minutes before the first byte (contract 5.4)
    report_timeout_seconds: float = option(300.0, "read timeout of one report request", minimum=1)
    report_attempts: int = option(3, "sends of one report page before its window is split in half", minimum=1)
    report_split_depth: int = option(5, "how many times a slow report window may be halved", minimum=0)
    block_wait_seconds: float = option(12.0, "pause after a blocked token (429 2.147.1.27 after a wait)", minimum=0)
    verify_tls: bool = option(True, "false accepts self-signed certificates (demo servers only)")
    ca_bundle: str = option("", "PEM file with the CA of a self-signed server")


REPORT_FILTERS = {
    "accountId": "one account's rows: accountId=3243001",
    "login": "the rows of one user's accounts: login=trader0001",
}
FILTERS = {
    "accounts": {"userId": "one user's accounts: userId=146000"},
    "statement": REPORT_FILTERS,
    "account_operations": {
        "accountId": "one account's operations (one request per window instead of one per account)",
        "operationTypeId": "one kind: 1 trading, 2 deposit, 3 withdrawal, 12 adjustment, 13 dividends, 17 transfer",
    },
    "trades": REPORT_FILTERS,
}


def _accounts(source: TraderEvolutionSource) -> Walk:
    return source.offset_lists("accounts", _single("/accounts", source.spec.filters), "id", ordered=True)


def _statement(source: TraderEvolutionSource) -> Walk:
    return source.offset_lists("statement", source.report_plan(STATEMENT_REPORT, None), "accountid", ordered=True,
                               decode=decode_report)


def _operations(source: TraderEvolutionSource) -> Walk:
    return OperationsRoute(source)


def per_account_operations(source: TraderEvolutionSource) -> OffsetLists:
    # per account, ids ascend with time: one account's windows in order are in id order, many
    # accounts' are not (a --limit then fetches them all and keeps the first N ids)
    one_account = "accountId" in source.spec.filters
    return source.offset_lists("account_operations", source.operations_plan, "id", ordered=one_account)


def _report_operations(source: TraderEvolutionSource, accounts: dict[str, int | None]) -> OffsetLists:
    # operation ids ascend with time and the windows go forward in time
    plan = source.report_plan(OPERATIONS_REPORT, source.options.operations_report_window_days)
    return source.report_lists("account_operations", plan, "id", decode=operations_from_report(source, accounts))


def _trades(source: TraderEvolutionSource) -> Walk:
    # trade ids ascend with time and the windows go forward in time
    return source.report_lists("trades", source.report_plan(TRADES_REPORT, source.options.window_days), "tradeid",
                               decode=decode_report)


class OperationsRoute:
    """``account_operations`` by the route the job asks for, or (auto) the operations report when
    this user can see it: one walk of date windows instead of a request per account. The choice
    is kept in the checkpoint (a resumed run goes on the same way) and named in the manifest."""

    def __init__(self, source: TraderEvolutionSource) -> None:
        self.source = source

    async def run(self, client: HttpClient, emit: Emit, state: dict[str, Any], coverage: Coverage | None = None
                  ) -> None:
        source = self.source
        if "route" not in state and "targets" in state:  # a checkpoint from before the choice existed
            state["route"], state["why"] = "per_account", "resumed a per-account walk"
        if "route" not in state:
            state["route"], state["why"] = await source.choose_operations_route(client)
        source.operations_choice = {"operations_route": state["route"], "operations_route_why": state["why"]}
        if state["route"] == "per_account":
            await per_account_operations(source).run(client, emit, state, coverage)
            return
        # the report names accounts, the table keys them by id: the names of every account
        # (one /accounts walk, a page per 1,000 accounts), also on a resumed run
        accounts = await source.account_names(client)
        await _report_operations(source, accounts).run(client, emit, state, coverage)


def operations_from_report(source: TraderEvolutionSource, accounts: dict[str, int | None]) -> RecordsDecoder:
    """Report 150 rows as the records ``GET /accountOperations`` serves, so both routes give one
    table: the account name becomes its id, the kind's name its id, time cells epoch ms, and an
    id of 0 (no order, position or trade) null."""

    def moment(value: Any) -> int | None:
        if value is None or value == "":
            return None
        try:
            moment = parse_timestamp(value, source.time_format, source.report_zone)
        except ValueError:
            return None  # a wall-clock time the zone skips names no instant
        # integer maths: a float timestamp x 1000 can land a millisecond short
        return (moment - EPOCH) // timedelta(milliseconds=1)

    def ref(value: Any) -> Any:
        return None if value == 0 or value == "" else value

    def decode(response: Response) -> list[dict[str, Any]]:
        out = []
        for row in decode_report(response):
            name = row.get("account")
            if name not in accounts:
                raise DataError(f"operations report names account {name!r}, which /accounts does not list")
            account = accounts[name]
            if account is None:
                raise DataError(f"operations report names account {name!r}, a name several accounts share")
            kind = row.get("operationtype")
            out.append({
                "id": row.get("accountoperationid"), "accountId": account,
                "operationTypeId": OPERATION_TYPE_IDS.get(str(kind).strip().lower()) if kind else None,
                "amount": row.get("value"), "currency": row.get("currency"), "balance": row.get("balance"),
                "createdAt": moment(row.get("createdat")), "valueDate": moment(row.get("valuedate")),
                "frontendComment": row.get("comments"), "orderId": ref(row.get("orderid")),
                "positionId": ref(row.get("positionid")), "tradeId": ref(row.get("tradeid")),
            })
        return out

    return decode


def halve_window(depth: int) -> Callable[[Target], list[Target]]:
    """Split a report window in two (keys ``<key>/0`` and ``<key>/1``), at most ``depth`` times."""

    def split(target: Target) -> list[Target]:
        start, end = int(target.params["startDate"]), int(target.params["endDate"])
        if target.key.count("/") >= depth or end - start < 2:
            return []
        middle = (start + end) // 2
        return [Target(f"{target.key}/0", target.path, {**target.params, "endDate": str(middle)}),
                Target(f"{target.key}/1", target.path, {**target.params, "startDate": str(middle + 1)})]

    return split


def _statement_schema(source: TraderEvolutionSource) -> RecordSchema:
    kinds = {c: ("str" if c in STATEMENT_TEXT else "int" if c == "accountid" else "decimal")
             for c in STATEMENT_COLUMNS}
    return report_schema("account statement", kinds, source.time_format, source.report_zone)


def _trades_schema(source: TraderEvolutionSource) -> RecordSchema:
    return report_schema("trades report", TRADES_TYPES, source.time_format, source.report_zone)


class TraderEvolutionSource(Source):
    kind = "traderevolution"
    Options = TraderEvolutionOptions
    ENV_PREFIX = "TRADEREVOLUTION"
    CREDENTIALS = {"login": "LOGIN", "password": "PASSWORD"}
    BASE_URL_FORM = URL_FORM
    DEFAULT_RPS: float | None = 1.6  # per collection: the public client keeps ~0.6 s between calls
    PACE_PER_COLLECTION = True  # the server limits each collection (/accounts, /reports, ...) separately
    STREAMS = (
        StreamDef("accounts", ACCOUNT, _accounts, (Dataset("accounts", stamped),), filters=FILTERS["accounts"]),
        # the Account Statement Report: one row per account, live engine values
        StreamDef("statement", _statement_schema, _statement, (
            Dataset("balances", statement(BALANCE_COLUMNS), key="account_id"),
            Dataset("equity", statement(EQUITY_COLUMNS), key="account_id"),
        ), filters=FILTERS["statement"], null_tokens=NULL_TOKENS, text_cells=True),
        StreamDef("account_operations", OPERATION, _operations, (Dataset("account_operations", as_is),),
                  filters=FILTERS["account_operations"]),
        StreamDef("trades", _trades_schema, _trades, (Dataset("trades", as_is, key="tradeid"),),
                  filters=FILTERS["trades"], null_tokens=NULL_TOKENS, text_cells=True),
    )

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self.operations_choice: dict[str, str] = {}
        self._report_ids: dict[str, int] = {}
        self._report_lock = asyncio.Lock()
        self.now: datetime | None = None
        self.time_format = java_time_format(self.options.report_datetime_format)
        self.report_zone = time_zone(self.options.report_timezone)  # checked when the job was parsed

    # -- connection -------------------------------------------------------------------------
    def connection(self, env: Mapping[str, str]) -> Connection:
        connection = super().connection(env)
        connection.ca_bundle = self.options.ca_bundle or env.get(self.variable("CA_BUNDLE"), "") or None
        connection.verify_tls = self.options.verify_tls
        return connection

    @contextmanager
    def sandbox(self) -> Iterator[Connection]:
        from ..sandbox.traderevolution import TraderEvolutionSimConfig, te_simulator

        with te_simulator(TraderEvolutionSimConfig(**dict(self.spec.sandbox or {}))) as (base_url, simulator):
            self.now = simulator.config.sim_start  # the simulator's clock is "now" for date windows
            config = simulator.config
            yield Connection(base_url, {"login": config.login, "password": config.password})

    def auth(self, connection: Connection) -> TokenAuth:
        variables = (self.base_url_variable, *self.credential_variables)
        return TokenAuth(connection.credentials["login"], connection.credentials["password"],
                         variables=variables)  # type: ignore[arg-type]

    def read_error(self, response: Response) -> str:
        return read_error(response)

    def client_settings(self, connection: Connection) -> ClientSettings:
        # rps = 0: start at the documented safe rate and find the limit from below. One 429
        # 2.147.1.27 may be a single violation or a blocked token: the probing pacer tells them
        # apart (a blocked token refuses the probe too), so there is no on_response floor here
        probing = ProbeSettings(start_rps=self.DEFAULT_RPS or 1.6, block_wait=float(self.options.block_wait_seconds))
        return replace(super().client_settings(connection), probing=probing)

    def manifest_extra(self) -> dict[str, Any]:
        """Recorded in each manifest: the zone report times were read in."""
        return {"report_timezone": self.options.report_timezone, **self.operations_choice}

    # -- what to fetch ----------------------------------------------------------------------
    def offset_lists(self, stream: str, plan: Callable[[HttpClient], Any], key: str, *, ordered: bool,
                     decode: Callable[[Response], list[dict[str, Any]]] = decode_records) -> OffsetLists:
        """A fan-out of limit/offset lists; for a pull's ``--limit N`` on a stream whose plan is in
        id order, one target at a time until N records came."""
        head = self.spec.limit if ordered else None
        return OffsetLists(stream, plan, decode, _id(key), self.spec.page_size, head=head)

    def report_lists(self, stream: str, plan: Callable[[HttpClient], Any], key: str,
                     decode: Callable[[Response], list[dict[str, Any]]]) -> OffsetLists:
        """A windowed report: its own read timeout and attempts, and a window that keeps timing
        out or failing with 5xx is halved (``report_split_depth`` times at most)."""
        walk = self.offset_lists(stream, plan, key, ordered=True, decode=decode)
        options = self.options
        return replace(walk, read_timeout=float(options.report_timeout_seconds), attempts=options.report_attempts,
                       split=halve_window(options.report_split_depth))

    async def choose_operations_route(self, client: HttpClient) -> tuple[str, str]:
        """(route, why): the job's choice, or auto's reason."""
        chosen = self.options.operations_route
        filters = self.spec.filters
        if chosen != "auto":
            if chosen == "report" and "operationTypeId" in filters:
                raise ConfigError("operationTypeId is not a report filter: set operations_route = \"per_account\"")
            return chosen, f"operations_route = {chosen!r} in the job"
        if filters:
            return "per_account", "auto: a filtered pull (the per-account list takes accountId and operationTypeId)"
        listing = await client.request("GET", "/reports", params={"name": OPERATIONS_REPORT}, decode=decode_records)
        if any(r.get("name") == OPERATIONS_REPORT for r in listing):
            return "report", f"auto: GET /reports lists {OPERATIONS_REPORT!r}"
        return "per_account", f"auto: GET /reports does not list {OPERATIONS_REPORT!r} for this user"

    async def account_names(self, client: HttpClient) -> dict[str, int | None]:
        """accountName -> id of every account; None for a name several accounts share."""
        names: dict[str, int | None] = {}
        async for page in self._account_pages(client):
            for record in page:
                name, account = record.get("accountName"), record.get("id")
                if isinstance(name, str) and isinstance(account, int):
                    names[name] = account if names.get(name, account) == account else None
        return names

    def _until(self) -> datetime:
        until = self.options.until
        return _parse_moment(until) if until else self.now or datetime.now(UTC)

    def _since(self) -> datetime:
        since = self.options.since
        if since:
            return _parse_moment(since)
        return self._until() - timedelta(days=self.options.since_days)

    async def report_id(self, client: HttpClient, name: str) -> int:
        async with self._report_lock:
            if name not in self._report_ids:
                listing = await client.request("GET", "/reports", params={"name": name}, decode=decode_records)
                matches = [r for r in listing if r.get("name") == name and isinstance(r.get("id"), int)]
                if not matches:
                    raise DataError(f"TraderEvolution has no report named {name!r} visible to this user")
                self._report_ids[name] = matches[0]["id"]
            return self._report_ids[name]

    def report_plan(self, name: str, window_days: int | None):
        filters = self.spec.filters

        async def plan(client: HttpClient) -> list[Target]:
            report = await self.report_id(client, name)
            path = f"/reports/{report}"
            if window_days is None:
                return [Target("snapshot", path, dict(filters))]
            windows = date_windows(self._since(), self._until(), window_days)
            return [Target(f"{a}", path, {**filters, "startDate": str(a), "endDate": str(b)}) for a, b in windows]

        return plan

    async def operations_plan(self, client: HttpClient) -> list[Target]:
        filters = self.spec.filters
        if "accountId" in filters:
            ids = [filters["accountId"]]  # one account: no need to list them all
        else:
            ids = [str(i) for i in sorted(set(await self._account_ids(client)))]
        windows = date_windows(self._since(), self._until(), self.options.operations_window_days)
        return [
            Target(f"{account}:{a}", "/accountOperations",
                   {**filters, "accountId": account, "startDate": str(a), "endDate": str(b)})
            for account in ids
            for a, b in windows
        ]

    async def _account_ids(self, client: HttpClient) -> list[int]:
        ids: list[int] = []
        async for page in self._account_pages(client):
            ids.extend(int(r["id"]) for r in page if isinstance(r.get("id"), int))
        return ids

    async def _account_pages(self, client: HttpClient) -> AsyncIterator[list[dict[str, Any]]]:
        offset = 0
        while True:
            page = await client.request(
                "GET",
                "/accounts",
                params={"limit": str(self.spec.page_size), "offset": str(offset)},
                decode=decode_records,
            )
            yield page
            offset += len(page)
            if len(page) < self.spec.page_size:
                return


def _url_only(url: str) -> str:
    """A URL without its query string or any user:password@ part: safe for a message."""
    scheme, sep, rest = url.split("?", 1)[0].partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme}{sep}{host.rsplit('@', 1)[-1]}{slash}{path}"


def _parse_moment(text: str) -> datetime:
    """``2025-01-31`` (midnight UTC) or an ISO datetime (naive means UTC)."""
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _single(path: str, params: dict[str, str]):
    async def plan(client: HttpClient) -> list[Target]:
        return [Target("all", path, dict(params))]

    return plan


def _id(key: str) -> Callable[[dict[str, Any]], Any]:
    def get(record: dict[str, Any]) -> Any:
        value = record.get(key)
        return value if isinstance(value, int) else None

    return get
