"""Tradesync API (https://api.tradesync.com): Basic auth, keyset pages in a ``meta`` envelope.

Streams:
- ``/accounts`` (one walk) feeds three datasets: ``accounts`` (every documented field except the
  plaintext MT ``password``), and the cross-source ``balances`` and ``equity`` tables.
- ``/trades`` feeds ``trades``: one global keyset walk split into parallel id ranges. Per-account
  fan-out would cost at least one request per account (25,000 accounts: 25,000 requests); the
  global walk costs one request per 1,000 trades (200 trades per account: 5,000 requests).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import msgspec
import pyarrow as pa

from ..errors import AuthError, DataError
from ..http import ClientSettings, HttpClient, Response
from ..incremental import cursor_key, written_rows
from ..jobs import Option, SourceSpec
from ..schema import RecordSchema, columns
from ..walk import IdBatches, IncrementalCollection, KeysetCollection, KeysetPage, Page
from . import Connection, Stream, client_settings, constant, identity, snapshot_time, with_snapshot_time

DEFAULT_BASE_URL = "https://api.tradesync.com"
ENV_KEY, ENV_SECRET, ENV_URL = "TRADESYNC_API_KEY", "TRADESYNC_API_SECRET", "TRADESYNC_BASE_URL"

ACCOUNT = RecordSchema(
    "tradesync account",
    columns(
        "id:int created_at:timestamp updated_at:timestamp last_ping:timestamp restored_at:timestamp "
        "account_name:str client_name:str broker:str server:str suffix:str currency:str "
        "account_number:int broker_server_id:int leverage:int status:str login_response:str "
        "trade_mode:str is_demo:str equity_protect:str equity_protect_value:decimal "
        "balance:decimal credit:decimal equity:decimal free_margin:decimal used_margin:decimal "
        "open_trades:int pending_orders:int open_trades_lots:decimal pending_orders_lots:decimal "
        "daily_profit:decimal weekly_profit:decimal monthly_profit:decimal total_profit:decimal "
        "type:str application:str modify_disabled:str mt_version:int"
    ),
    secret_fields=frozenset({"password"}),
)

TRADE = RecordSchema(
    "tradesync trade",
    columns(
        "id:int account_id:int ticket:int magic:int created_at:timestamp updated_at:timestamp "
        "open_time:timestamp close_time:timestamp state:str type:str symbol:str comment:str "
        "lots:decimal open_price:decimal stop_loss:decimal take_profit:decimal close_price:decimal "
        "commission:decimal swap:decimal profit:decimal digits:int tick_value:decimal "
        "tick_size:decimal alt_tick_value:decimal profit_calc_mode:str"
    ),
)

BALANCE_COLUMNS = ("currency", "balance", "credit")
EQUITY_COLUMNS = (
    "currency", "equity", "free_margin", "used_margin", "open_trades", "open_trades_lots",
    "daily_profit", "weekly_profit", "monthly_profit", "total_profit",
)


def canonical_projection(names: tuple[str, ...], source: str):
    """``snapshot_at, source, account_id, <names>`` from an accounts table: the cross-source shape."""

    def project(table: pa.Table, page: Page) -> pa.Table:
        head = [snapshot_time(table, page), constant(source, table)]
        arrays = [*head, table.column("id"), *(table.column(n) for n in names)]
        return pa.Table.from_arrays(arrays, names=["snapshot_at", "source", "account_id", *names])

    return project


class _Meta(msgspec.Struct):
    count: int | None = None
    limit: int | None = None
    order: str | None = None
    last_id: int | None = None


class _ListEnvelope(msgspec.Struct):
    result: str
    data: list[msgspec.Raw]
    status: int | None = None
    meta: _Meta | None = None


class _IdOnly(msgspec.Struct):
    id: int


class _IdEnvelope(msgspec.Struct):
    data: list[_IdOnly]


class _ErrorEnvelope(msgspec.Struct):
    result: str | None = None
    status: int | None = None
    code: str | None = None
    message: str | None = None


_list_decoder = msgspec.json.Decoder(_ListEnvelope)
_id_decoder = msgspec.json.Decoder(_IdEnvelope)
_error_decoder = msgspec.json.Decoder(_ErrorEnvelope)


def decode_list_page(response: Response) -> KeysetPage:
    """Decode a ``{result, status, meta, data: [...]}`` page without touching the values.

    The records stay raw JSON (exact decimals come later from the text); only their ids are read.
    Anything else (HTML from a proxy, a wrong envelope, a record without an integer id) is a
    :class:`DataError`, which the HTTP client retries as a transient failure.
    """
    body = response.body
    try:
        envelope = _list_decoder.decode(body)
        ids = _leading_ids(envelope.data)
        if ids is None:
            ids = [row.id for row in _id_decoder.decode(body).data]
    except msgspec.DecodeError as exc:
        raise DataError(f"not a Tradesync list page ({_describe(response)}): {exc}") from None
    if envelope.result.lower() != "success":
        raise DataError(f"page has result={envelope.result!r} ({_describe(response)})")
    meta = envelope.meta
    if meta is not None and meta.count is not None and meta.count != len(envelope.data):
        raise DataError(f"meta.count={meta.count} but the page holds {len(envelope.data)} records")
    # msgspec.Raw views the body's bytes (buffer protocol): no copy of every record
    return KeysetPage(envelope.data, ids, meta.limit if meta is not None else None)


_LEADING_ID = re.compile(rb'\{\s*"id"\s*:\s*(-?[0-9]+)\s*[,}]')


def _leading_ids(objects: list[msgspec.Raw]) -> list[int] | None:
    """Ids of objects whose first key is ``"id"`` (as Tradesync serialises them), else None.

    A quarter of the cost of decoding every record a second time for its id; msgspec has already
    checked each object is valid JSON, and the converter checks these ids against the id column
    it parses, so a record that repeats its ``id`` key cannot slip through.
    """
    match = _LEADING_ID.match
    ids = []
    for raw in objects:
        found = match(raw)
        if found is None:
            return None
        ids.append(int(found[1]))
    return ids


def _describe(response: Response) -> str:
    ctype = response.headers.get("Content-Type", "?")
    return f"HTTP {response.status}, {ctype}, {len(response.body)} bytes"


class BasicAuth:
    """``Authorization: Basic base64(key:secret)`` on every request; nothing to refresh."""

    def __init__(self, key: str, secret: str) -> None:
        token = base64.b64encode(f"{key}:{secret}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}"}

    async def headers(self, client: HttpClient) -> dict[str, str]:
        return self._headers

    async def on_unauthorized(self, client: HttpClient, response: Response) -> bool:
        return False

    def __repr__(self) -> str:  # never show the secret, even in a debugger or a traceback
        return "BasicAuth(<redacted>)"


class TradesyncSource:
    kind = "tradesync"
    DATASETS = ("accounts", "balances", "equity", "trades")
    DEFAULT_RPS: float | None = None
    DEFAULT_PAGE_SIZE = 1000
    OPTIONS = {
        "parallel_walks": Option(int, 0, "id ranges walked at once per collection; 0 = auto", minimum=0),
        "trades_state": Option(str, "all", "which trades to export", choices=("all", "open", "closed")),
        "trades_mode": Option(
            str, "snapshot", "snapshot: every trade each run; incremental: new ids + refresh of open ones",
            choices=("snapshot", "incremental"),
        ),
    }
    auth_hint = f"check {ENV_KEY} and {ENV_SECRET}"

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec

    def connection(self, env: Mapping[str, str]) -> Connection:
        key, secret = env.get(ENV_KEY, ""), env.get(ENV_SECRET, "")
        if not key or not secret:
            raise AuthError(f"tradesync: set {ENV_KEY} and {ENV_SECRET} (or add a [sources.tradesync.sandbox] table)")
        url = env.get(ENV_URL)
        origin = ENV_URL if url else f"{ENV_URL}'s default"
        return Connection(url or DEFAULT_BASE_URL, {"key": key, "secret": secret}, base_url_from=origin)

    @contextmanager
    def sandbox(self) -> Iterator[Connection]:
        from ..sandbox.tradesync import TradesyncSimConfig, tradesync_simulator

        settings = dict(self.spec.sandbox or {})
        with tradesync_simulator(TradesyncSimConfig(**settings)) as (base_url, simulator):
            key, secret = next(iter(simulator.config.api_keys.items()))
            yield Connection(base_url, {"key": key, "secret": secret})

    def auth(self, connection: Connection) -> BasicAuth:
        return BasicAuth(connection.credentials["key"], connection.credentials["secret"])

    def read_error(self, response: Response) -> str:
        try:
            body = _error_decoder.decode(response.body)
        except msgspec.DecodeError:
            return f"non-JSON body ({_describe(response)})"
        parts = [p for p in (body.code, body.message) if p]
        return ": ".join(parts) if parts else _describe(response)

    def on_response(self, response: Response) -> float | None:
        return None

    def client_settings(self, connection: Connection) -> ClientSettings:
        return client_settings(self.spec, connection)

    def manifest_extra(self) -> dict[str, Any]:
        return {}

    def streams(self) -> list[Stream]:
        chosen = set(self.spec.datasets)
        walkers = int(self.spec.options.get("parallel_walks", 0))
        out: list[Stream] = []
        account_outputs: dict[str, Any] = {}
        if "accounts" in chosen:
            account_outputs["accounts"] = with_snapshot_time
        if "balances" in chosen:
            account_outputs["balances"] = canonical_projection(BALANCE_COLUMNS, self.kind)
        if "equity" in chosen:
            account_outputs["equity"] = canonical_projection(EQUITY_COLUMNS, self.kind)
        page_size = self.spec.page_size
        if account_outputs:
            walk = KeysetCollection("accounts", "/accounts", decode_list_page, page_size, walkers=walkers)
            out.append(Stream("accounts", ACCOUNT, walk, account_outputs))
        if "trades" in chosen:
            state = self.spec.options.get("trades_state", "all")
            if self.spec.options.get("trades_mode") == "incremental":
                out.append(self._incremental_trades(state, page_size, walkers))
            else:
                params = {} if state == "all" else {"state": state}
                walk = KeysetCollection("trades", "/trades", decode_list_page, page_size, params, walkers=walkers)
                out.append(Stream("trades", TRADE, walk, {"trades": identity}))
        return out

    @staticmethod
    def _incremental_trades(state: str, page_size: int, walkers: int) -> Stream:
        """Both walks fetch every state, whatever ``trades_state`` says: the cursor must see the open
        trades to refresh them later (a ``closed`` table gets them once they close). The filter
        applies to the rows written."""
        walk = KeysetCollection("trades", "/trades", decode_list_page, page_size, walkers=walkers)
        refresh = IdBatches("trades", "/trades", decode_list_page)

        def written(table: pa.Table, page: Page) -> pa.Table:
            return written_rows(table, state, page.context.get("after"))

        return Stream("trades", TRADE, IncrementalCollection(walk, refresh), {"trades": written},
                      incremental=cursor_key("trades", state))
