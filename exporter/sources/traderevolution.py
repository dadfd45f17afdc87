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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

import msgspec
import pyarrow as pa

from ..errors import AuthError, ConfigError, DataError, JobFileError
from ..http import ClientSettings, HttpClient, ProbeSettings, Response
from ..jobs import Option, SourceSpec
from ..schema import Column, RecordSchema, sanitize_column_names, time_zone
from ..walk import OffsetLists, Page, Target
from . import Connection, Stream, client_settings, constant, identity, snapshot_time, with_snapshot_time
from .tradesync import BALANCE_COLUMNS, EQUITY_COLUMNS

ENV_URL, ENV_LOGIN, ENV_PASSWORD = "TRADEREVOLUTION_BASE_URL", "TRADEREVOLUTION_LOGIN", "TRADEREVOLUTION_PASSWORD"
ENV_CA_BUNDLE = "TRADEREVOLUTION_CA_BUNDLE"
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

    def __init__(self, login: str, password: str) -> None:
        self._login = login
        self._password = password
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
        for attempt in range(1, 6):
            response = await client.send_once("POST", "/auth/token", json=body)
            if response.status == 200:
                client.stats.logins += 1
                self._store(response)
                return
            if response.status in (401, 403):
                codes = describe_codes(error_codes(response)) or f"HTTP {response.status}"
                raise AuthError(f"TraderEvolution login failed: {codes}; check {ENV_LOGIN} and {ENV_PASSWORD}")
            if response.status in (404, 405):
                # no login route there: the URL, not the credentials, is wrong (often the API path is missing)
                raise ConfigError(
                    f"TraderEvolution login: HTTP {response.status} from {_url_only(response.url)}: "
                    f"{ENV_URL} does not look like the BackOffice REST API; expected the form {URL_FORM}"
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


def _statement_projection(canonical: tuple[str, ...], raw_names: list[str]) -> Callable[[pa.Table, Page], pa.Table]:
    """balances/equity: the Tradesync columns first (nulls where TE has no value), then raw columns."""
    canonical_types = {
        "account_id": pa.int64(),
        "currency": pa.string(),
        "open_trades": pa.int64(),
    }

    def project(table: pa.Table, page: Page) -> pa.Table:
        n = table.num_rows
        arrays = [snapshot_time(table, page), constant("traderevolution", table)]
        names = ["snapshot_at", "source"]
        for name in ("account_id", *canonical):
            source = CANONICAL_FROM_STATEMENT.get(name)
            if source is not None and source in table.column_names:
                arrays.append(table.column(source))
            else:
                arrays.append(pa.nulls(n, canonical_types.get(name, pa.decimal128(38, 10))))
            names.append(name)
        for raw in raw_names:
            if raw in table.column_names:
                arrays.append(table.column(raw))
                names.append(f"te_{raw}")
        for extra in table.column_names:
            if extra not in raw_names:
                arrays.append(table.column(extra))
                names.append(f"te_{extra}")
        return pa.Table.from_arrays(arrays, names=names)

    def written(column: str) -> tuple[str, ...]:
        """Every report column goes out as ``te_<column>``; some also as a Tradesync-shaped one."""
        shaped = tuple(n for n in ("account_id", *canonical) if CANONICAL_FROM_STATEMENT.get(n) == column)
        return (*shaped, f"te_{column}")

    project.written_names = written  # type: ignore[attr-defined]
    return project


class TraderEvolutionSource:
    kind = "traderevolution"
    DATASETS = ("accounts", "balances", "equity", "account_operations", "trades")
    DEFAULT_RPS: float | None = 1.6  # per collection: the public client keeps ~0.6 s between calls
    DEFAULT_PAGE_SIZE = 1000
    OPTIONS = {
        "since": Option(str, "", "history start, YYYY-MM-DD (default: since_days before now)"),
        "until": Option(str, "", "history end, ISO date or datetime (default: now)"),
        "since_days": Option(int, 90, "history length when 'since' is not set", minimum=1),
        "window_days": Option(int, 7, "date window of one report/operations request", minimum=1),
        # one window per account by default: the fan-out costs a request per account and window,
        # and the per-collection pace (1.6/s) makes every extra window minutes on a real server
        "operations_window_days": Option(int, 92, "date window of one account's operations request", minimum=1),
        "report_datetime_format": Option(str, "dd.MM.yyyy HH:mm:ss", "how this server formats report times"),
        # the contract leaves the zone of report cells undocumented; many back offices run on local time
        "report_timezone": Option(str, "UTC", "IANA zone report times are written in", check=time_zone),
        "block_wait_seconds": Option(
            (int, float), 12.0, "pause after a blocked token (429 2.147.1.27 after a wait)", minimum=0
        ),
        "verify_tls": Option(bool, True, "false accepts self-signed certificates (demo servers only)"),
        "ca_bundle": Option(str, "", "PEM file with the CA of a self-signed server"),
    }
    auth_hint = f"check {ENV_LOGIN} and {ENV_PASSWORD}"

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self.options = spec.options
        self._report_ids: dict[str, int] = {}
        self._report_lock = asyncio.Lock()
        self.now: datetime | None = None
        fmt = str(self.options.get("report_datetime_format") or "dd.MM.yyyy HH:mm:ss")
        self.time_format = java_time_format(fmt)
        self.report_timezone = str(self.options.get("report_timezone") or "UTC")
        self.report_zone = time_zone(self.report_timezone)  # checked when the job was parsed
        for key in ("since", "until"):
            value = str(self.options.get(key) or "")
            if value:
                try:
                    _parse_moment(value)
                except ValueError:
                    raise JobFileError(
                        f"sources.traderevolution.{key} must be an ISO date or datetime, got {value!r}"
                    ) from None

    # -- connection -------------------------------------------------------------------------
    def connection(self, env: Mapping[str, str]) -> Connection:
        url, login, password = env.get(ENV_URL, ""), env.get(ENV_LOGIN, ""), env.get(ENV_PASSWORD, "")
        if not url:
            raise AuthError(f"traderevolution: set {ENV_URL} ({URL_FORM})")
        if not login or not password:
            raise AuthError(f"traderevolution: set {ENV_LOGIN} and {ENV_PASSWORD}")
        ca_bundle = str(self.options.get("ca_bundle") or env.get(ENV_CA_BUNDLE, "")) or None
        return Connection(
            url,
            {"login": login, "password": password},
            verify_tls=bool(self.options.get("verify_tls", True)),
            ca_bundle=ca_bundle,
            base_url_from=ENV_URL,
        )

    @contextmanager
    def sandbox(self) -> Iterator[Connection]:
        from ..sandbox.traderevolution import TraderEvolutionSimConfig, te_simulator

        with te_simulator(TraderEvolutionSimConfig(**dict(self.spec.sandbox or {}))) as (base_url, simulator):
            self.now = simulator.config.sim_start  # the simulator's clock is "now" for date windows
            config = simulator.config
            yield Connection(base_url, {"login": config.login, "password": config.password})

    def auth(self, connection: Connection) -> TokenAuth:
        return TokenAuth(connection.credentials["login"], connection.credentials["password"])

    def read_error(self, response: Response) -> str:
        return read_error(response)

    def on_response(self, response: Response) -> float | None:
        """No floor of our own: one 429 ``2.147.1.27`` may be a single violation or a blocked token,
        which the probing pacer tells apart (a blocked token refuses the probe too)."""
        return None

    def client_settings(self, connection: Connection) -> ClientSettings:
        # rps = 0: start at the documented safe rate and find the limit from below
        probing = ProbeSettings(
            start_rps=self.DEFAULT_RPS or 1.6, block_wait=float(self.options.get("block_wait_seconds", 12.0))
        )
        return client_settings(self.spec, connection, pace_per_collection=True, probing=probing)

    def manifest_extra(self) -> dict[str, Any]:
        """Recorded in each manifest: the zone report times were read in."""
        return {"report_timezone": self.report_timezone}

    # -- what to fetch ----------------------------------------------------------------------
    def _until(self) -> datetime:
        until = str(self.options.get("until") or "")
        return _parse_moment(until) if until else self.now or datetime.now(UTC)

    def _since(self) -> datetime:
        since = str(self.options.get("since") or "")
        if since:
            return _parse_moment(since)
        return self._until() - timedelta(days=int(self.options.get("since_days", 90)))

    async def report_id(self, client: HttpClient, name: str) -> int:
        async with self._report_lock:
            if name not in self._report_ids:
                listing = await client.request("GET", "/reports", params={"name": name}, decode=decode_records)
                matches = [r for r in listing if r.get("name") == name and isinstance(r.get("id"), int)]
                if not matches:
                    raise DataError(f"TraderEvolution has no report named {name!r} visible to this user")
                self._report_ids[name] = matches[0]["id"]
            return self._report_ids[name]

    def streams(self) -> list[Stream]:
        chosen = set(self.spec.datasets)
        size = self.spec.page_size
        out: list[Stream] = []
        if "accounts" in chosen:
            walk = OffsetLists("accounts", _single("/accounts"), decode_records, _id("id"), size)
            out.append(Stream("accounts", ACCOUNT, walk, {"accounts": with_snapshot_time}))
        statement_outputs: dict[str, Any] = {}
        raw = sanitize_column_names(STATEMENT_COLUMNS)
        if "balances" in chosen:
            statement_outputs["balances"] = _statement_projection(BALANCE_COLUMNS, raw)
        if "equity" in chosen:
            statement_outputs["equity"] = _statement_projection(EQUITY_COLUMNS, raw)
        if statement_outputs:
            kinds = {
                c: ("str" if c in STATEMENT_TEXT else "int" if c == "accountid" else "decimal")
                for c in STATEMENT_COLUMNS
            }
            walk = OffsetLists(
                "statement", self._report_plan(STATEMENT_REPORT, None), decode_report, _id("accountid"), size
            )
            out.append(
                Stream(
                    "statement",
                    report_schema("account statement", kinds, self.time_format, self.report_zone),
                    walk,
                    statement_outputs,
                    null_tokens=NULL_TOKENS,
                    text_cells=True,
                )
            )
        if "account_operations" in chosen:
            walk = OffsetLists("account_operations", self._operations_plan, decode_records, _id("id"), size)
            out.append(Stream("account_operations", OPERATION, walk, {"account_operations": identity}))
        if "trades" in chosen:
            days = int(self.options.get("window_days", 7))
            walk = OffsetLists("trades", self._report_plan(TRADES_REPORT, days), decode_report, _id("tradeid"), size)
            out.append(
                Stream(
                    "trades",
                    report_schema("trades report", TRADES_TYPES, self.time_format, self.report_zone),
                    walk,
                    {"trades": identity},
                    null_tokens=NULL_TOKENS,
                    text_cells=True,
                )
            )
        return out

    def _report_plan(self, name: str, window_days: int | None):
        async def plan(client: HttpClient) -> list[Target]:
            report = await self.report_id(client, name)
            path = f"/reports/{report}"
            if window_days is None:
                return [Target("snapshot", path, {})]
            windows = date_windows(self._since(), self._until(), window_days)
            return [Target(f"{a}", path, {"startDate": str(a), "endDate": str(b)}) for a, b in windows]

        return plan

    async def _operations_plan(self, client: HttpClient) -> list[Target]:
        ids: list[int] = []
        offset = 0
        while True:
            page = await client.request(
                "GET",
                "/accounts",
                params={"limit": str(self.spec.page_size), "offset": str(offset)},
                decode=decode_records,
            )
            ids.extend(int(r["id"]) for r in page if isinstance(r.get("id"), int))
            offset += len(page)
            if len(page) < self.spec.page_size:
                break
        windows = date_windows(self._since(), self._until(), int(self.options.get("operations_window_days", 92)))
        return [
            Target(
                f"{account}:{a}",
                "/accountOperations",
                {"accountId": str(account), "startDate": str(a), "endDate": str(b)},
            )
            for account in sorted(set(ids))
            for a, b in windows
        ]


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


def _single(path: str):
    async def plan(client: HttpClient) -> list[Target]:
        return [Target("all", path, {})]

    return plan


def _id(key: str) -> Callable[[dict[str, Any]], Any]:
    def get(record: dict[str, Any]) -> Any:
        value = record.get(key)
        return value if isinstance(value, int) else None

    return get
