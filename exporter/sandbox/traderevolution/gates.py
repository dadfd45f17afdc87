"""What a TraderEvolution request meets before its route (contract section 8, stages 1-3): the
token (or login), the block and rate limit per (token, collection), injected faults; and the
``{"errors": [code]}`` replies every refusal is written in.

Time sources: token lifetimes run on real monotonic time plus an offset that ``/_sim/advance``
adds to; rate-limit buckets and token blocks use real monotonic time only.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..base import NGINX_502_HTML, BlockingRateLimiter, RequestStats, StagedFaults
from .config import TraderEvolutionSimConfig
from .values import dumps

ERR_BAD_CREDENTIALS = "1.2.0.11"
ERR_NO_API_ACCESS = "2.0.2.4"
ERR_TOKEN = "1.1.1.11"
ERR_FILTER_EMPTY = "1.6.2.2"
ERR_RATE_LIMIT = "2.147.1.27"

ERROR_DESCRIPTIONS: dict[str, str] = {
    ERR_BAD_CREDENTIALS: "Wrong login or password",
    ERR_NO_API_ACCESS: "User has no REST API access",
    ERR_TOKEN: "Token expired or invalid",
    ERR_FILTER_EMPTY: "PARAM / REPORT_REQUEST / FILTER_TYPE / EMPTY",
    ERR_RATE_LIMIT: "Rate limit exceeded or token blocked",
}


class ApiError(Exception):
    """An API error reply: ``{"errors": [code]}`` with an HTTP status."""

    def __init__(self, status: int, code: str | None = None, retry_after: int | None = None):
        super().__init__(status, code)
        self.status = status
        self.code = code or f"9.0.0.{status}"
        self.retry_after = retry_after


@dataclass
class Reply:
    """What a request answers, before it becomes an HTTP response (after the latency)."""

    status: int = 200
    payload: Any = None
    body: bytes | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    extra_delay_s: float = 0.0
    drop: bool = False


def error_response(err: ApiError) -> web.Response:
    return web.Response(status=err.status, body=dumps({"errors": [err.code]}),
                        content_type="application/json")


def to_response(reply: Reply) -> web.Response:
    if reply.status == 204:
        return web.Response(status=204, headers=reply.headers)
    body = reply.body if reply.body is not None else dumps(reply.payload)
    return web.Response(status=reply.status, body=body, content_type=reply.content_type,
                        headers=reply.headers)


class Tokens:
    """Access tokens and rotating refresh tokens, with the logins and refreshes that issued them."""

    def __init__(self) -> None:
        self.offset_s = 0.0  # the seconds /_sim/advance added
        self._access: dict[str, float] = {}
        self._refresh: dict[str, float] = {}
        self.logins = 0
        self.refreshes = 0

    def now(self) -> float:
        return time.monotonic() + self.offset_s

    def issue(self, cfg: TraderEvolutionSimConfig) -> Reply:
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(32)
        now = self.now()
        self._access[access] = now + cfg.access_ttl_s
        self._refresh[refresh] = now + cfg.refresh_ttl_s
        return Reply(payload={"accessToken": access, "refreshToken": refresh,
                              "accessTokenLifeTime": cfg.access_ttl_s,
                              "refreshTokenLifeTime": cfg.refresh_ttl_s})

    def rotate(self, refresh_token: str) -> bool:
        """Spend a refresh token (the old one dies); whether it was alive."""
        expiry = self._refresh.pop(refresh_token, None)
        return expiry is not None and expiry > self.now()

    def alive(self, access_token: str | None) -> bool:
        expiry = self._access.get(access_token) if access_token else None
        if expiry is None or expiry <= self.now():
            self._access.pop(access_token or "", None)
            return False
        return True


class Gates:
    """Stages 1-3 for one simulator, under its lock; :meth:`reset` forgets tokens, the limiter's
    state and the fault sequence."""

    def __init__(self, config: TraderEvolutionSimConfig, lock: threading.Lock, stats: RequestStats) -> None:
        self.config, self._lock, self._stats = config, lock, stats
        self.reset()

    def reset(self) -> None:
        cfg = self.config
        self.tokens = Tokens()
        rps = float(cfg.rate_limit_rps)
        self.limiter = BlockingRateLimiter(rps, cfg.rate_limit_burst or max(1, math.ceil(rps)),
                                           cfg.blocking_threshold, cfg.blocking_duration_s)
        self.faults = StagedFaults(cfg.seed)
        self.rate_limited = 0

    def latency_s(self, seq: int) -> float:
        return self.faults.latency_s(seq, self.config.latency_ms, self.config.latency_jitter_ms)

    def caller(self, request: web.Request, tail: str, body: Any) -> str:
        """Stage 1: the token (or login) that identifies the caller for limiting."""
        if tail == "auth/token":
            login = body.get("login") if isinstance(body, dict) else None
            return f"login:{login if isinstance(login, str) else ''}"
        if tail == "auth/token/refresh":
            return f"refresh:{request.headers.get('token', '')}"
        token = self._bearer(request)
        with self._lock:
            if not self.tokens.alive(token):
                raise ApiError(401, ERR_TOKEN)
        return f"token:{token}"

    def _bearer(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "").strip()
        if header[:7].lower() == "bearer ":
            return header[7:].strip() or None
        if self.config.accept_raw_token and header:
            return header
        return None

    def check_rate(self, caller: str, collection: str) -> None:
        """Stage 2: block and token bucket."""
        with self._lock:
            retry_after = self.limiter.check(caller, collection, time.monotonic())
            if retry_after is not None:
                self.rate_limited += 1
                raise ApiError(429, ERR_RATE_LIMIT, retry_after)

    def fault(self, seq: int) -> Reply | None:
        """Stage 3: seeded fault injection (error_rate and fail_every_n)."""
        cfg = self.config
        with self._lock:
            kind = self.faults.decide(seq, cfg.error_rate, cfg.fail_every_n, cfg.fault_kinds)
            if kind is None:
                return None
            self._stats.fault(kind)
        if kind == "drop":
            return Reply(status=0, drop=True)
        if kind == "html502":
            return Reply(status=502, body=NGINX_502_HTML, content_type="text/html")
        if kind == "429":
            return self.error_reply(ApiError(429, ERR_RATE_LIMIT, 1))
        return self.error_reply(ApiError(int(kind)))

    def error_reply(self, err: ApiError) -> Reply:
        headers = {}
        if err.retry_after is not None and self.config.retry_after_header:
            headers["Retry-After"] = str(err.retry_after)
        return Reply(status=err.status, payload={"errors": [err.code]}, headers=headers)
