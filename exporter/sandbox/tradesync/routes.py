"""What each Tradesync route answers: path matching, parameter validation (contract section 8,
checks 5-7), keyset pages and single resources rendered from the data at a clock, and the cache of
rendered pages."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import orjson
from aiohttp import web

from .columns import ENCODER
from .config import TradesyncSimConfig
from .data import ANALYSIS_ID_START, TradesyncData
from .gates import Reject


@dataclass(frozen=True)
class Route:
    kind: str  # accounts, account, trades, trade, analyses, analysis, dailies, monthlies, brokers, servers
    path_id: str | None = None


@dataclass(frozen=True)
class ListQuery:
    """A validated list request: keyset order, the effective limit, the cursor and the filters."""

    order: str
    limit: int
    last_id: int | None
    filters: tuple[tuple[str, Any], ...] = ()

    def get(self, name: str) -> Any:
        return dict(self.filters).get(name)


# An /accounts page from elsewhere (a benchmark's pre-rendered rows), or None to render it here.
# Arguments: the query and the simulator's clock.
AccountPageSource = Callable[[ListQuery, datetime], bytes | None]

_LIST_PARAMS = {
    "accounts": (), "trades": ("account_id", "account_ids", "state", "id", "ids"), "analyses": (),
    "dailies": ("start_date", "end_date"), "monthlies": ("start_date", "end_date"),
    "brokers": (), "servers": ("application",),
}
_INT_RE = re.compile(r"-?[0-9]+\Z")
_INT_LIST_RE = re.compile(r"-?[0-9]+(,-?[0-9]+)*\Z")
_ID_CAP = 2**62  # larger ids exist nowhere; capping keeps numpy searches in int64
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")


def match_route(path: str) -> Route | None:
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]  # one trailing slash is tolerated
    parts = path.split("/")[1:]
    if not parts or any(p == "" for p in parts):
        return None
    head, rest = parts[0], parts[1:]
    if head in ("accounts", "trades", "analyses") and not rest:
        return Route(head)
    if head in ("brokers", "broker-servers") and not rest:
        return Route("brokers" if head == "brokers" else "servers")
    if head in ("accounts", "trades", "analyses") and len(rest) == 1:
        return Route({"accounts": "account", "trades": "trade", "analyses": "analysis"}[head], rest[0])
    if head == "analyses" and len(rest) == 2 and rest[1] in ("dailies", "monthlies"):
        return Route(rest[1], rest[0])
    return None


def validate(kind: str, query: Any, max_limit: int, strict_limit: bool) -> ListQuery:
    errors: dict[str, list[str]] = {}
    limit = min(1000, max_limit)
    if "limit" in query:
        raw = query["limit"]
        if not _INT_RE.match(raw) or int(raw) < 1:
            errors["limit"] = ["The limit must be an integer greater than or equal to 1."]
        elif int(raw) > max_limit and strict_limit:
            errors["limit"] = [f"The limit may not be greater than {max_limit}."]
        else:
            limit = min(int(raw), max_limit)
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        errors["order"] = ["The selected order is invalid."]
    last_id = None
    if "last_id" in query:
        raw = query["last_id"]
        if not _INT_RE.match(raw) or int(raw) < 0:
            errors["last_id"] = ["The last id must be an integer greater than or equal to 0."]
        else:
            last_id = min(int(raw), _ID_CAP)
    filters = [(name, _filter_value(name, query[name], errors)) for name in _LIST_PARAMS[kind] if name in query]
    start, end = dict(filters).get("start_date"), dict(filters).get("end_date")
    if isinstance(start, date) and isinstance(end, date) and start > end:
        errors["start_date"] = ["The start date must be a date before or equal to end date."]
    if errors:
        raise Reject(422, "VALIDATION_FAIL", errors)
    return ListQuery(order, limit, last_id, tuple(filters))


def _filter_value(name: str, raw: str, errors: dict[str, list[str]]) -> Any:
    if name in ("account_id", "id"):
        if _INT_RE.match(raw):
            return max(min(int(raw), _ID_CAP), -_ID_CAP)
        errors[name] = [f"The {name.replace('_', ' ')} must be an integer."]
    elif name in ("account_ids", "ids"):
        if _INT_LIST_RE.match(raw):
            return tuple(sorted({max(min(int(v), _ID_CAP), -_ID_CAP) for v in raw.split(",")}))
        errors[name] = [f"The {name.replace('_', ' ')} must be a comma-separated list of integers."]
    elif name == "state":
        if raw in ("open", "closed"):
            return raw
        errors[name] = ["The selected state is invalid."]
    elif name == "application":
        if raw in ("mt4", "mt5"):
            return raw
        errors[name] = ["The selected application is invalid."]
    else:  # start_date / end_date
        try:
            if _DATE_RE.match(raw):
                return date.fromisoformat(raw)
        except ValueError:
            pass
        errors[name] = [f"The {name.replace('_', ' ')} must be a date in YYYY-MM-DD format."]
    return None


def paginate(ids: np.ndarray, q: ListQuery) -> np.ndarray:
    """Positions into ascending ``ids`` for one keyset page, in response order."""
    if q.order == "asc":
        start = 0 if q.last_id is None else int(np.searchsorted(ids, q.last_id, side="right"))
        return np.arange(start, min(start + q.limit, len(ids)))
    stop = len(ids) if q.last_id is None else int(np.searchsorted(ids, q.last_id, side="left"))
    return np.arange(stop - 1, max(stop - q.limit, 0) - 1, -1)


def parse_path_id(raw: str | None) -> int:
    if raw is None or not _INT_RE.match(raw) or len(raw) > 18:
        raise Reject(404, "NOT_FOUND")
    return int(raw)


class PageCache:
    """LRU of rendered page bodies, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        with self._lock:
            body = self._items.get(key)
            if body is not None:
                self._items.move_to_end(key)
            return body

    def put(self, key: tuple[Any, ...], body: bytes) -> bool:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return True
            if len(body) > self.max_bytes:
                return False
            self._items[key] = body
            self._size += len(body)
            while self._size > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._size -= len(old)
            return True

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._size = 0


class Routes:
    """Answers a request that passed the gates; ``config`` is read on every request."""

    def __init__(self, data: TradesyncData, config: TradesyncSimConfig, page_cache_bytes: int) -> None:
        self.data, self.config = data, config
        self.cache = PageCache(page_cache_bytes)
        self.account_pages: AccountPageSource | None = None

    def answer(self, request: web.Request, clock: int) -> bytes:
        """Checks 5-7 and the response body of a request that passed the gates."""
        route = match_route(request.path)
        if route is None:
            raise Reject(404, "NOT_FOUND")
        if request.method != "GET":
            raise Reject(405, "METHOD_NOT_ALLOWED", headers={"Allow": "GET"})
        if request.body_exists and request.content_type != "application/json":
            raise Reject(415, "INVALID_CONTENT_TYPE")
        if route.kind in _LIST_PARAMS:
            q = validate(route.kind, request.query, self.config.max_limit, self.config.strict_limit)
            return self.list_page(route, q, clock)
        body = {"result": "success", "status": 200, "data": self._single(route, clock)}
        if self.config.drift == "typed_fields":
            return ENCODER.encode(body)  # its exact number texts are msgspec.Raw
        return orjson.dumps(body)

    # ---- lists ----------------------------------------------------------------

    def list_page(self, route: Route, q: ListQuery, clock: int) -> bytes:
        key = (route.kind, route.path_id, q, clock)
        body = self.cache.get(key)
        if body is None:
            body = self._render_list(route, q, clock)
            self.cache.put(key, body)
        return body

    def accounts_page(self, q: ListQuery, clock: int) -> tuple[bytes, int | None]:
        """The simulator's own rendering of an /accounts page, and its ``meta.last_id``."""
        data = self.data
        pos = paginate(data.ids[: data.visible_accounts(clock)], q)
        last_id = int(data.ids[pos[-1]]) if len(pos) else None
        return self._list_body(data.account_payload(pos, clock), q, last_id), last_id

    @staticmethod
    def _list_body(data: list[Any], q: ListQuery, last_id: int | None) -> bytes:
        meta = {"count": len(data), "limit": q.limit, "order": q.order, "last_id": last_id}
        return ENCODER.encode({"result": "success", "status": 200, "meta": meta, "data": data})

    def _items_page(self, items: list[dict[str, Any]], q: ListQuery) -> bytes:
        pos = paginate(np.array([i["id"] for i in items], dtype=np.int64), q).tolist()
        return self._list_body([items[p] for p in pos], q, items[pos[-1]]["id"] if pos else None)

    def _render_list(self, route: Route, q: ListQuery, clock: int) -> bytes:
        data = self.data
        if route.kind == "accounts":
            source = self.account_pages
            body = source(q, datetime.fromtimestamp(clock, UTC)) if source is not None else None
            return body if body is not None else self.accounts_page(q, clock)[0]
        if route.kind == "trades":
            return self._trades_page(q, clock)
        if route.kind == "analyses":
            n = data.visible_accounts(clock)
            pos = paginate(ANALYSIS_ID_START + np.arange(n), q)
            last_id = ANALYSIS_ID_START + int(pos[-1]) if len(pos) else None
            return self._list_body(data.analysis_rows(pos, clock, False), q, last_id)
        if route.kind in ("dailies", "monthlies"):
            a = self._account_index(route.path_id, clock)
            return self._items_page(data.history(route.kind, a, clock, q.get("start_date"), q.get("end_date")), q)
        return self._items_page(data.catalog(route.kind, q.get("application")), q)

    def _trades_page(self, q: ListQuery, clock: int) -> bytes:
        data = self.data
        view = data.view(clock)
        if view is None:
            return self._list_body([], q, None)
        cand = self._trade_candidates(view.n_visible, view.closed, q)
        ids = data.book.ids[: view.n_visible] if cand is None else data.book.ids[cand]  # type: ignore[union-attr]
        pos = paginate(ids, q)
        rows = pos if cand is None else cand[pos]
        last_id = int(ids[pos[-1]]) if len(pos) else None
        return self._list_body(data.trade_payload(rows, view), q, last_id)

    def _trade_candidates(self, n: int, closed: np.ndarray, q: ListQuery) -> np.ndarray | None:
        """Visible row positions matching the filters, ascending; None means every visible row."""
        b, all_ids = self.data.book, self.data.ids
        assert b is not None
        cand: np.ndarray | None = None
        accounts = [set(v) if isinstance(v, tuple) else {v} for k, v in q.filters if k in ("account_id", "account_ids")]
        if accounts:
            wanted = np.array(sorted(set.intersection(*accounts)), dtype=np.int64)
            idx = np.searchsorted(all_ids, wanted).clip(0, max(len(all_ids) - 1, 0))
            idx = idx[all_ids[idx] == wanted] if len(all_ids) else idx[:0]
            parts = [b.rows_of(int(i)) for i in idx]
            cand = np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
            cand = cand[cand < n]
        ids_filters = [set(v) if isinstance(v, tuple) else {v} for k, v in q.filters if k in ("id", "ids")]
        if ids_filters:
            wanted = np.array(sorted(set.intersection(*ids_filters)), dtype=np.int64)
            pos = np.searchsorted(b.ids[:n], wanted).clip(0, max(n - 1, 0))
            pos = np.unique(pos[b.ids[pos] == wanted]) if n else pos[:0]
            cand = pos if cand is None else np.intersect1d(cand, pos)
        state = q.get("state")
        if state is not None:
            base = np.arange(n) if cand is None else cand
            cand = base[closed[base] == (state == "closed")]
        return cand

    # ---- single resources -----------------------------------------------------

    def _account_index(self, raw: str | None, clock: int) -> int:
        index = self.data.account_index(parse_path_id(raw), clock)
        if index is None:
            raise Reject(404, "NOT_FOUND")
        return index

    def _single(self, route: Route, clock: int) -> dict[str, Any]:
        data = self.data
        if route.kind == "account":
            return data.account_rows(np.array([self._account_index(route.path_id, clock)]), clock, False)[0]
        if route.kind == "analysis":
            return data.analysis_rows(np.array([self._account_index(route.path_id, clock)]), clock, False)[0]
        trade_id, view = parse_path_id(route.path_id), data.view(clock)
        pos = None if view is None else data.trade_position(trade_id, view)
        if view is None or pos is None:
            raise Reject(404, "NOT_FOUND")
        return data.trade_rows(np.array([pos]), view, False)[0]
