"""Tradesync API (https://api.tradesync.com): Basic auth, keyset pages in a ``meta`` envelope.

Streams:
- ``/accounts`` (one walk) feeds three datasets: ``accounts`` (every documented field except the
  plaintext MT ``password``), and the cross-source ``balances`` and ``equity`` tables.
- ``/trades`` feeds ``trades``: one global keyset walk split into parallel id ranges. Per-account
  fan-out would cost at least one request per account (25,000 accounts: 25,000 requests); the
  global walk costs one request per 1,000 trades (200 trades per account: 5,000 requests).
- ``/analyses/{account_id}/dailies`` feeds ``balance_history`` (asked for by name: it costs a
  request per account, the API has no bulk route for it): a fan-out over the account ids, which
  stream in from a keyset walk of ``/accounts``, one page (up to 1,000 ids) at a time.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
import pyarrow as pa

from ..checkpoint import Replace
from ..errors import DataError
from ..estimate import Coverage
from ..http import HttpClient, Response
from ..incremental import cursor_key, history_cursor, observe_dates, seed_history, written_rows
from ..jobs import SourceOptions, option
from ..pagination import KeysetWalker
from ..schema import RecordSchema, columns
from ..walk import (
    Emit,
    IdBatches,
    IncrementalCollection,
    KeysetCollection,
    KeysetHead,
    KeysetPage,
    OffsetLists,
    Page,
    Target,
)
from .base import Connection, Dataset, Projection, Source, StreamDef, Walk, as_is, stamped
from .canonical import BALANCE_COLUMNS, EQUITY_COLUMNS, canonical_table, constant

DEFAULT_BASE_URL = "https://api.tradesync.com"

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

# a daily item of /analyses/{account_id}/dailies (contract section 5; ``id`` is the paging cursor)
DAILY = RecordSchema(
    "tradesync daily",
    columns(
        "id:int account_id:int date:date running_balance:decimal profit_loss:decimal "
        "running_profit_loss:decimal running_growth:decimal lots:decimal"
    ),
)
HISTORY_COLUMNS = ("account_id", "date", "running_balance", "profit_loss", "running_profit_loss",
                   "running_growth", "lots")
HISTORY_FILTERS = {"account_id": "one account's history: account_id=1241400"}

TRADE_FILTERS = {
    "account_id": "one account's trades: account_id=1241400",
    "account_ids": "several accounts' trades: account_ids=1241400,1241403",
    "state": "open or closed",
    "ids": "these trades: ids=37000000,37000013 (used by incremental runs; not in the API's documentation)",
}


def canonical(names: tuple[str, ...]):
    """Feed of ``balances``/``equity``: ``snapshot_at, source, account_id, <names>`` from an accounts page."""

    def feed(source: Source) -> Projection:
        def project(table: pa.Table, page: Page) -> pa.Table:
            found = {"account_id": table.column("id"), **{n: table.column(n) for n in names}}
            arrays, out = canonical_table(names, source.name, page, table.num_rows, found)
            return pa.Table.from_arrays(arrays, names=out)

        return project

    return feed


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
    errors: Any = None  # a validation error's {field: [text, ...]} (Laravel style), where a server sends it


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


def _check_day(text: str) -> None:
    if text:
        try:
            date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"must be a date YYYY-MM-DD, got {text!r}") from None


@dataclass(frozen=True)
class TradesyncOptions(SourceOptions):
    parallel_walks: int = option(0, "id ranges walked at once per collection; 0 = auto", minimum=0)
    trades_state: str = option("all", "which trades to export", choices=("all", "open", "closed"))
    trades_mode: str = option(
        "snapshot", "snapshot: every trade each run; incremental: new ids + refresh of open ones",
        choices=("snapshot", "incremental"),
    )

    history_days: int = option(90, "balance_history: the last N days, today included (unless history_since)",
                               minimum=1)
    history_since: str = option("", "balance_history: first day, YYYY-MM-DD (instead of history_days)",
                                check=_check_day)
    history_mode: str = option(
        "snapshot", "balance_history: snapshot: the whole window each run; incremental: the days after the "
        "last published one (plus history_overlap_days), one run_id partition per run",
        choices=("snapshot", "incremental"),
    )
    history_overlap_days: int = option(1, "incremental balance_history: published days fetched again (the last "
                                          "day may still change)", minimum=0)

    def for_pull(self) -> TradesyncOptions:
        # a pull moves no cursor
        return replace(self, trades_mode="snapshot", history_mode="snapshot")


def _keyset(source: TradesyncSource, stream: str, path: str, params: dict[str, str] | None = None) -> Walk:
    """A keyset walk of ``path``: the whole collection in parallel id ranges, or, for a pull's
    ``--limit N``, its first N records in one ascending walk that stops there."""
    params = {**(params or {}), **source.spec.filters}
    spec = source.spec
    if spec.limit is not None:
        return KeysetHead(stream, path, decode_list_page, spec.limit, spec.page_size, params)
    return KeysetCollection(stream, path, decode_list_page, spec.page_size, params,
                            walkers=source.options.parallel_walks)


def _accounts(source: TradesyncSource) -> Walk:
    return _keyset(source, "accounts", "/accounts")


def _trades(source: TradesyncSource) -> Walk:
    state = source.options.trades_state
    return _keyset(source, "trades", "/trades", {} if state == "all" else {"state": state})


def _incremental_trades(source: TradesyncSource) -> Walk:
    """Both walks fetch every state, whatever ``trades_state`` says: the cursor must see the open
    trades to refresh them later (a ``closed`` table gets them once they close). The filter
    applies to the rows written (:func:`_written_trades`)."""
    walk = KeysetCollection("trades", "/trades", decode_list_page, source.spec.page_size,
                            walkers=source.options.parallel_walks)
    return IncrementalCollection(walk, IdBatches("trades", "/trades", decode_list_page))


def _written_trades(source: TradesyncSource) -> Projection:
    state = source.options.trades_state

    def written(table: pa.Table, page: Page) -> pa.Table:
        return written_rows(table, state, page.context.get("after"))

    return written


def _incremental(source: TradesyncSource) -> bool:
    return source.options.trades_mode == "incremental"


def _balance_history(source: TradesyncSource) -> Projection:
    def project(table: pa.Table, page: Page) -> pa.Table:
        arrays = [constant(source.name, table.num_rows), *(table.column(n) for n in HISTORY_COLUMNS)]
        return pa.Table.from_arrays(arrays, names=["source", *HISTORY_COLUMNS])

    return project


def _no_records(response: Response) -> list[dict[str, Any]]:
    raise TypeError("balance history pages are keyset pages")  # OffsetLists.keyset decodes them


@dataclass
class HistoryWalk:
    """Every account's daily history: a fan-out of one keyset list per account (one request each
    for up to 1,000 days), bounded by the client's concurrency and sharing its rate limit.

    The account ids stream in from a keyset walk of ``/accounts`` (ids only), one page at a time:
    each page's accounts are fanned out, and only once all of them are finished does the walk read
    the next page. The checkpoint holds the outer cursor (``after``), the page in flight (its ids
    and each one's dailies cursor) and the accounts that failed, never every id: its size is bounded
    by the page size, and a resumed run re-walks at most the unfinished accounts of that page. A
    rerun after failures fetches only the failed accounts (closed pages are not read again)."""

    source: TradesyncSource

    async def run(
        self, client: HttpClient, emit: Emit, state: dict[str, Any], coverage: Coverage | None = None
    ) -> None:
        source = self.source
        coverage = coverage if coverage is not None else Coverage()
        # a seeded incremental run starts after its cursor; else the job's window
        since = state.get("since") or source.history_start().isoformat()
        state.setdefault("since", since)
        state.setdefault("failed", {})
        self._since = since
        self._rows_left = source.spec.limit  # a pull's --limit, across pages
        # the walk's own view of what is closed; the state only learns it once the rows are durable
        self._after, self._accounts = state.get("after"), int(state.get("accounts", 0))
        page: dict[str, Any] = state.get("page") or {}
        in_flight = {str(a) for a in page.get("ids", [])}
        # accounts that failed on pages already closed (a rerun): tried again first, alone
        self._known_failed = {k for k, v in state["failed"].items() if v}
        retry = sorted((k for k in self._known_failed if k not in in_flight), key=int)
        one = source.spec.filters.get("account_id")
        self._single = bool(one)
        if one and not state.get("listed") and not page:
            page = {"ids": [int(one)], "last": None, "listed": True}
        self._plan_coverage(state, coverage)
        if retry:
            retried = (state.get("retry") or {}).get("progress", {})
            await self._fan_out(client, emit, "retry", [int(k) for k in retry], retried, Coverage())
            await emit(Page("balance_history", records=[], progress={"retry": Replace()}))
        if page:
            await self._finish_page(client, emit, state, page, coverage)
        if one or state.get("listed"):
            return
        walker = KeysetWalker(source.spec.page_size, cursor=self._after)
        while not walker.done and (self._rows_left is None or self._rows_left > 0):
            params = walker.next_params()
            listed = await client.request("GET", "/accounts", params=params, decode=decode_list_page)
            keep = walker.update(listed.ids, int(params["limit"]), listed.meta_limit)
            page = {"ids": listed.ids[keep.start : keep.stop], "last": walker.cursor, "listed": walker.done}
            # the page's plan reaches the checkpoint with (or before) its first rows
            await emit(Page("balance_history", records=[], progress={"page": Replace(page, progress={})}))
            await self._finish_page(client, emit, state, page, coverage)

    def _plan_coverage(self, state: dict[str, Any], coverage: Coverage) -> None:
        """The share of the id span (lowest to highest account id, read once and stored) below the
        outer cursor: the listing's pages say nothing of the total."""
        coverage.planned = True
        if self._single:
            coverage.unit, coverage.total, coverage.done = "lists", None, 0
            return
        coverage.estimated = True
        low, high = int(state.get("lowest") or 0), int(state.get("highest") or 0)
        self._span = (low, high)
        coverage.total = max(1, high - low + 1)
        after = self._after if self._after is not None else low - 1
        coverage.done = max(0, min(high, int(after)) - low + 1) if high else 0

    async def _finish_page(self, client: HttpClient, emit: Emit, state: dict[str, Any],
                           page: dict[str, Any], coverage: Coverage) -> None:
        ids: list[int] = [int(a) for a in page["ids"]]
        if ids and not self._single and not state.get("highest"):
            top = await client.request("GET", "/accounts", params={"order": "desc", "limit": "1"},
                                       decode=decode_list_page)
            state["lowest"], state["highest"] = ids[0], max([*top.ids[:1], ids[-1]])
            self._plan_coverage(state, coverage)
        low, high = self._span if not self._single else (0, 0)
        last = page.get("last")
        # this page covers the id span from the previous cursor up to its last id
        first = max(low, int(self._after) + 1) if self._after is not None else low
        width = max(0, min(high, int(last if last is not None else high)) - first + 1) if high else 0
        before, part = coverage.done, Coverage()

        def moved() -> None:
            if width and part.total:
                coverage.done = before + width * part.done / part.total

        await self._fan_out(client, emit, "page", ids, page.get("progress", {}), part, moved)
        self._accounts += len(ids)
        closed: dict[str, Any] = {"page": Replace(), "accounts": self._accounts}
        if last is not None:
            closed["after"] = self._after = last
        if page.get("listed"):
            closed["listed"] = True
        await emit(Page("balance_history", records=[], progress=closed))
        coverage.done = before + width if width else coverage.done

    async def _fan_out(self, client: HttpClient, emit: Emit, slot: str, ids: list[int], progress: dict[str, Any],
                       coverage: Coverage, moved: Any = None) -> None:
        """One page's accounts (or the failed ones again) through :class:`OffsetLists`; its state
        lives under ``slot``, failures go to the run-wide ``failed``."""
        targets = [[str(a), f"/analyses/{a}/dailies", {"start_date": self._since}] for a in ids]
        sub = {"targets": targets, "progress": dict(progress), "failed": {}}

        async def emit_up(page: Page) -> None:
            failed = page.progress.get("failed", {})
            # a success clears only a failure recorded before; new ones are kept (small)
            failed = {k: v for k, v in failed.items() if v or k in self._known_failed}
            lifted: dict[str, Any] = {}
            if "progress" in page.progress:
                lifted[slot] = {"progress": page.progress["progress"]}
            if failed:
                lifted["failed"] = failed
            page.progress = {**{k: v for k, v in page.progress.items() if k not in ("progress", "failed")}, **lifted}
            if self._rows_left is not None:
                self._rows_left -= page.size
            await emit(page)
            if moved is not None:
                moved()

        head = self._rows_left
        if head is not None and head <= 0:
            return
        lists = OffsetLists("balance_history", _no_plan, _no_records, lambda r: r["id"], self.source.spec.page_size,
                            head=head, keyset=decode_list_page)
        await lists.run(client, emit_up, sub, coverage)


async def _no_plan(client: HttpClient) -> list[Target]:
    raise AssertionError("HistoryWalk plans each page itself")


def _history_incremental(source: TradesyncSource) -> bool:
    return source.options.history_mode == "incremental"


def _history_cursor(source: TradesyncSource) -> dict[str, Any]:
    overlap = source.options.history_overlap_days
    return {"seed": lambda previous: seed_history(previous, overlap), "observe": observe_dates,
            "cursor": history_cursor}


class TradesyncSource(Source):
    kind = "tradesync"
    Options = TradesyncOptions
    ENV_PREFIX = "TRADESYNC"
    CREDENTIALS = {"key": "API_KEY", "secret": "API_SECRET"}
    DEFAULT_BASE_URL = DEFAULT_BASE_URL
    STREAMS = (
        # one walk of /accounts carries the live balance and equity: three datasets from one walk
        StreamDef("accounts", ACCOUNT, _accounts, (
            Dataset("accounts", stamped),
            Dataset("balances", canonical(BALANCE_COLUMNS), key="account_id"),
            Dataset("equity", canonical(EQUITY_COLUMNS), key="account_id"),
        )),
        StreamDef("trades", TRADE, _trades, (Dataset("trades", as_is),), filters=TRADE_FILTERS,
                  when=lambda source: not _incremental(source)),
        StreamDef("trades", TRADE, _incremental_trades, (Dataset("trades", _written_trades),),
                  when=_incremental, incremental=lambda source: cursor_key("trades", source.options.trades_state)),
        StreamDef("balance_history", DAILY, HistoryWalk,
                  (Dataset("balance_history", _balance_history, key="account_id", default=False),),
                  filters=HISTORY_FILTERS, when=lambda source: not _history_incremental(source)),
        StreamDef("balance_history", DAILY, HistoryWalk,
                  (Dataset("balance_history", _balance_history, key="account_id", default=False),),
                  when=_history_incremental, incremental=lambda source: "balance_history",
                  cursor_kind=_history_cursor),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.now: datetime | None = None  # the simulator's clock in a sandbox

    def history_start(self) -> date:
        """The first day of ``balance_history`` without a cursor: ``history_since``, or the last
        ``history_days`` days up to today (UTC)."""
        if self.options.history_since:
            return date.fromisoformat(self.options.history_since)
        today = (self.now or datetime.now(UTC)).date()
        return today - timedelta(days=self.options.history_days - 1)

    @contextmanager
    def sandbox(self) -> Iterator[Connection]:
        from ..sandbox.tradesync import TradesyncSimConfig, tradesync_simulator

        settings = dict(self.spec.sandbox or {})
        with tradesync_simulator(TradesyncSimConfig(**settings)) as (base_url, simulator):
            key, secret = next(iter(simulator.config.api_keys.items()))
            self.now = simulator.clock  # the simulator's clock is "today" for balance history
            yield Connection(base_url, {"key": key, "secret": secret})

    def auth(self, connection: Connection) -> BasicAuth:
        return BasicAuth(connection.credentials["key"], connection.credentials["secret"])

    def read_error(self, response: Response) -> str:
        """``CODE: message``, and a validation error's per-field texts where the body has them
        (``VALIDATION_FAIL: Input validation error (state: The selected state is invalid.)``)."""
        try:
            body = _error_decoder.decode(response.body)
        except msgspec.DecodeError:
            return f"non-JSON body ({_describe(response)})"
        parts = [p for p in (body.code, body.message) if p]
        text = ": ".join(parts) if parts else _describe(response)
        if isinstance(body.errors, dict):
            details = "; ".join(f"{field}: {' '.join(map(str, texts)) if isinstance(texts, list) else texts}"
                                for field, texts in body.errors.items())
            text += f" ({details})" if details else ""
        return text
