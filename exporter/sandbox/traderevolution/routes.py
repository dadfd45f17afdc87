"""What each TraderEvolution route answers (contract section 8, stages 4-5): the route table,
parameter validation, and the handlers over the data, the reports and the tokens."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .config import BASE_PATH, TraderEvolutionSimConfig
from .data import World
from .entities import ASSETS, account_json, op_json, user_json
from .gates import (
    ERR_BAD_CREDENTIALS,
    ERR_FILTER_EMPTY,
    ERR_NO_API_ACCESS,
    ERR_TOKEN,
    ERROR_DESCRIPTIONS,
    ApiError,
    Gates,
    Reply,
)
from .reports import NEW_REPORT_COLUMN, Reports, ReportSpec, new_column_value


@dataclass
class Ctx:
    request: web.Request
    match: re.Match[str]
    body: Any = None


class Params:
    """Validation of query parameters following the contract's rules."""

    _INT = re.compile(r"-?\d+")

    def __init__(self, query: Any, cfg: TraderEvolutionSimConfig) -> None:
        self.query = query
        self.cfg = cfg

    def int_opt(self, name: str) -> int | None:
        raw = self.query.get(name)
        if raw is None or raw == "":
            return None
        if not self._INT.fullmatch(raw):
            raise ApiError(400)
        return int(raw)

    def limit(self) -> int:
        value = self.int_opt("limit")
        if value is None:
            return min(self.cfg.default_limit, self.cfg.max_limit)
        if value <= 0:
            raise ApiError(406)
        return min(value, self.cfg.max_limit)  # silently clamped, as real servers do

    def offset(self) -> int:
        value = self.int_opt("offset")
        if value is not None and value < 0:
            raise ApiError(406)
        return value or 0

    def dates(self) -> tuple[int | None, int | None]:
        start, end = self.int_opt("startDate"), self.int_opt("endDate")
        if start is not None and end is not None and start > end:
            raise ApiError(406)
        return start, end

    def flag(self, name: str) -> bool:
        raw = self.query.get(name)
        if raw is None or raw == "":
            return False
        if raw.lower() not in ("true", "false"):
            raise ApiError(400)
        return raw.lower() == "true"

    def text(self, name: str) -> str | None:
        raw = self.query.get(name)
        return raw if raw else None


def page_of(items: Sequence[Any], offset: int, limit: int) -> Sequence[Any]:
    return items[offset:offset + limit]


class Api:
    """The handlers of one simulator: they read its data and reports at its clock, and issue its
    tokens, under its lock."""

    def __init__(self, config: TraderEvolutionSimConfig, world: World, reports: Reports,
                 report_ids: dict[str, int], spec_by_id: dict[int, ReportSpec], gates: Gates,
                 lock: threading.Lock, clock: Callable[[], int]) -> None:
        self.config, self.world, self._reports = config, world, reports
        self._report_ids, self._spec_by_id = report_ids, spec_by_id
        self._gates, self._lock, self._clock = gates, lock, clock
        self._routes = self._route_table()

    def dispatch(self, tail: str, request: web.Request, body: Any) -> Reply:
        """Stages 4-5: route, method, then the handler's own validation."""
        for pattern, methods in self._routes:
            match = pattern.fullmatch(tail)
            if match is None:
                continue
            handler = methods.get(request.method)
            if handler is None:
                raise ApiError(405)
            return handler(Ctx(request, match, body))
        raise ApiError(404)

    def _route_table(self) -> list[tuple[re.Pattern[str], dict[str, Callable[[Ctx], Reply]]]]:
        table: list[tuple[str, dict[str, Callable[[Ctx], Reply]]]] = [
            ("auth/token", {"POST": self._h_login}),
            ("auth/token/refresh", {"GET": self._h_refresh}),
            ("users", {"GET": self._h_users}),
            ("users/(?P<id>[^/]+)", {"GET": self._h_user}),
            ("users/(?P<id>[^/]+)/accounts", {"GET": self._h_user_accounts}),
            ("accounts", {"GET": self._h_accounts}),
            ("accounts/(?P<id>[^/]+)", {"GET": self._h_account}),
            ("accountOperations", {"GET": self._h_operations}),
            ("assets", {"GET": self._h_assets}),
            ("reports", {"GET": self._h_reports}),
            ("reports/(?P<id>[^/]+)", {"GET": self._h_run_report}),
            ("methods/errors", {"GET": self._h_error_info}),
            ("v2/api-docs", {"GET": self._h_api_docs}),
            ("swagger-ui.html", {"GET": self._h_swagger_ui}),
        ]
        return [(re.compile(pattern), methods) for pattern, methods in table]

    def _params(self, ctx: Ctx) -> Params:
        return Params(ctx.request.query, self.config)

    def _list_reply(self, items: Sequence[Any]) -> Reply:
        if not items and self.config.empty_list_status == 204:
            return Reply(status=204)
        return Reply(payload=list(items))

    @staticmethod
    def _path_id(ctx: Ctx) -> int:
        raw = ctx.match.group("id")
        if not Params._INT.fullmatch(raw):
            raise ApiError(400)
        return int(raw)

    def _h_login(self, ctx: Ctx) -> Reply:
        body, cfg = ctx.body, self.config
        if not isinstance(body, dict):
            raise ApiError(400)
        login, password = body.get("login"), body.get("password")
        if not isinstance(login, str) or not isinstance(password, str):
            raise ApiError(400)
        if password != cfg.password or login not in (cfg.login, cfg.no_api_login):
            raise ApiError(401, ERR_BAD_CREDENTIALS)
        if login == cfg.no_api_login:
            raise ApiError(401, ERR_NO_API_ACCESS)
        with self._lock:
            tokens = self._gates.tokens
            tokens.logins += 1
            return tokens.issue(cfg)

    def _h_refresh(self, ctx: Ctx) -> Reply:
        token = ctx.request.headers.get("token", "")
        with self._lock:
            tokens = self._gates.tokens
            if not tokens.rotate(token):  # rotation: the old refresh token dies
                raise ApiError(401, ERR_TOKEN)
            tokens.refreshes += 1
            return tokens.issue(self.config)

    def _h_users(self, ctx: Ctx) -> Reply:
        p = self._params(ctx)
        login, limit, offset = p.text("login"), p.limit(), p.offset()
        users = [u for u in self.world.users if login is None or u.login == login]
        return self._list_reply([user_json(u) for u in page_of(users, offset, limit)])

    def _h_user(self, ctx: Ctx) -> Reply:
        user = self.world.user_by_id.get(self._path_id(ctx))
        if user is None:
            raise ApiError(404)
        return Reply(payload=user_json(user))

    def _h_user_accounts(self, ctx: Ctx) -> Reply:
        user = self.world.user_by_id.get(self._path_id(ctx))
        if user is None:
            raise ApiError(404)
        return self._list_reply([account_json(a) for a in user.accounts])

    def _h_accounts(self, ctx: Ctx) -> Reply:
        p = self._params(ctx)
        user_id, limit, offset = p.int_opt("userId"), p.limit(), p.offset()
        accounts = [a for a in self.world.accounts if user_id is None or a.user.id == user_id]
        return self._list_reply([account_json(a) for a in page_of(accounts, offset, limit)])

    def _h_account(self, ctx: Ctx) -> Reply:
        acct = self.world.account_by_id.get(self._path_id(ctx))
        if acct is None:
            raise ApiError(404)
        return Reply(payload=account_json(acct))

    def _h_operations(self, ctx: Ctx) -> Reply:
        p = self._params(ctx)
        account_id, type_id = p.int_opt("accountId"), p.int_opt("operationTypeId")
        start, end = p.dates()
        limit, offset = p.limit(), p.offset()
        with self._lock:
            ops = self.world.visible_ops(self.world.filter_accounts(account_id, None), start, end, self._clock())
        if type_id is not None:
            ops = [o for o in ops if o.type_id == type_id]
        return self._list_reply([op_json(o) for o in page_of(ops, offset, limit)])

    def _h_assets(self, ctx: Ctx) -> Reply:
        p = self._params(ctx)
        limit, offset = p.limit(), p.offset()
        assets = [{"id": aid, "name": name} for aid, name in ASSETS]
        return self._list_reply(page_of(assets, offset, limit))

    def _h_reports(self, ctx: Ctx) -> Reply:
        query = ctx.request.query
        names = query.get("name")
        # A '+' sent unencoded arrives as a space; accept both spellings.
        sort = (query.get("sort") or "+id").strip()
        field_name = sort.lstrip("+-")
        if field_name not in ("id", "name") or len(sort) - len(field_name) > 1:
            raise ApiError(406)
        wanted = {n.strip() for n in names.split(",")} if names else None
        items = [{"name": name, "id": rid} for name, rid in self._report_ids.items()
                 if (wanted is None or name in wanted) and name not in self.config.hidden_reports]
        items.sort(key=lambda r: r[field_name], reverse=sort.startswith("-"))
        return self._list_reply(items)

    def _h_run_report(self, ctx: Ctx) -> Reply:
        spec = self._spec_by_id.get(self._path_id(ctx))
        if spec is None or spec.name in self.config.hidden_reports:
            raise ApiError(404)
        p = self._params(ctx)
        start, end = p.dates()
        account_id, login = p.int_opt("accountId"), p.text("login")
        limit, offset, with_total = p.limit(), p.offset(), p.flag("isTotal")
        asset_name = p.text("assetName")
        if spec.key == "statement_ccy" and asset_name is None:
            raise ApiError(406, ERR_FILTER_EMPTY)
        with self._lock:
            accounts = self.world.filter_accounts(account_id, login)
            query = self._reports.query(start, end, accounts, asset_name, self._clock())
            items = self._reports.items(spec, query)
            if not spec.snapshot and 0 < self.config.report_max_window_rows < len(items):
                raise ApiError(504)  # the proxy in front of a heavy query gave up
            rows = [self._reports.row(spec, it, query) for it in page_of(items, offset, limit)]
            all_rows = [self._reports.row(spec, it, query) for it in items] if with_total else []
        headers = [c for c, _ in spec.columns]
        if self.config.report_new_column:
            headers.append(NEW_REPORT_COLUMN)
            cells = self.config.report_new_column_cells
            rows = [[*row, new_column_value(offset + i, cells)] for i, row in enumerate(rows)]
        data: list[Any] = rows
        if self.config.report_row_shape == "object":
            data = [dict(zip(headers, row, strict=True)) for row in rows]
        payload: dict[str, Any] = {"headers": headers, "data": data}
        if with_total:
            payload["total"] = Reports.totals(spec, all_rows) + [None] * (len(headers) - len(spec.columns))
        delay = self.config.report_latency_ms_per_1000_rows * len(rows) / 1_000_000
        if not spec.snapshot:
            delay += self.config.report_window_latency_ms_per_1000_rows * len(items) / 1_000_000
        return Reply(payload=payload, extra_delay_s=delay)

    def _h_error_info(self, ctx: Ctx) -> Reply:
        code = ctx.request.query.get("errorId")
        if not code:
            raise ApiError(400)
        description = ERROR_DESCRIPTIONS.get(code)
        generic = re.fullmatch(r"9\.0\.0\.(\d{3})", code)
        if description is None and generic:
            description = f"Simulator error for HTTP {generic.group(1)} (not a real TE code)"
        if description is None:
            raise ApiError(404)
        return Reply(payload={"errorId": code, "description": description})

    def _h_api_docs(self, ctx: Ctx) -> Reply:
        return Reply(payload=swagger_doc(ctx.request.host))

    def _h_swagger_ui(self, ctx: Ctx) -> Reply:
        page = (b"<!DOCTYPE html><html><head><title>Swagger UI</title></head><body>"
                b"<p>TraderEvolution BO API simulator. Spec: <a href=\"v2/api-docs\">"
                b"v2/api-docs</a></p></body></html>")
        return Reply(body=page, content_type="text/html")


def swagger_doc(host: str) -> dict[str, Any]:
    """A minimal Swagger 2.0 description with Springfox-style operation ids."""
    ops = {
        "/auth/token": ("post", "getTokenUsingPOST", "auth"),
        "/auth/token/refresh": ("get", "refreshTokenUsingGET", "auth"),
        "/users": ("get", "getUsersUsingGET", "users"),
        "/users/{userId}": ("get", "getUserUsingGET", "users"),
        "/users/{userId}/accounts": ("get", "getUserAccountsUsingGET", "users"),
        "/accounts": ("get", "getAccountsUsingGET", "accounts"),
        "/accounts/{accountId}": ("get", "getAccountUsingGET", "accounts"),
        "/accountOperations": ("get", "getAccountOperationsUsingGET", "accountOperations"),
        "/assets": ("get", "getAssetsUsingGET", "assets"),
        "/reports": ("get", "reportsUsingGET", "reports"),
        "/reports/{reportId}": ("get", "runReportUsingGET", "reports"),
        "/methods/errors": ("get", "getErrorUsingGET", "methods"),
    }
    paths: dict[str, Any] = {}
    for path, (method, op_id, tag) in ops.items():
        params = [{"name": name, "in": "path", "required": True, "type": "integer"}
                  for name in re.findall(r"\{(\w+)\}", path)]
        paths[path] = {method: {"tags": [tag], "operationId": op_id, "parameters": params,
                                "responses": {"200": {"description": "OK"}}}}
    return {
        "swagger": "2.0",
        "info": {"title": "TraderEvolution BackOffice REST API (simulator)", "version": "sim"},
        "host": host,
        "basePath": BASE_PATH,
        "schemes": ["http"],
        "securityDefinitions": {"Bearer": {"type": "apiKey", "name": "Authorization",
                                           "in": "header"}},
        "paths": paths,
    }
