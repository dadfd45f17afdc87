"""What a Tradesync request meets before its route: maintenance, HTTP Basic auth, the rate limit
per API key and injected faults (contract section 8, checks 1-4), and the error envelope every
refusal is written in (contract section 3)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from aiohttp import web

from ..base import KeyedRateLimiter, RequestPlan, drop_connection, html_502_response
from .config import TradesyncSimConfig

MESSAGES = {
    "AUTHORISATION_FAILED": "Authorisation header invalid",
    "NOT_AUTHORISED": "Authorisation failed",
    "FORBIDDEN": "Insufficient permissions to access this resource",
    "NOT_FOUND": "Resource does not exist",
    "METHOD_NOT_ALLOWED": "Method not allowed",
    "INVALID_CONTENT_TYPE": "Request header 'Content-Type: application/json' required",
    "VALIDATION_FAIL": "Input validation error",
    "TOO_MANY_REQUESTS": "Too many requests",
    "ERROR": "System error has occurred",
    "MAINTENANCE_MODE": "Maintenance mode enabled",
}

# fault kind -> (status, code); "429-retry-after" adds the planned Retry-After
_FAULT_ERRORS = {
    "500": (500, "ERROR"),
    "503": (503, "MAINTENANCE_MODE"),
    "429": (429, "TOO_MANY_REQUESTS"),
    "429-retry-after": (429, "TOO_MANY_REQUESTS"),
}


class Reject(Exception):
    """A request that ends in a Tradesync error envelope."""

    def __init__(self, status: int, code: str, errors: dict[str, list[str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(code)
        self.status, self.code, self.errors, self.headers = status, code, errors, headers


class Gates:
    """Checks 1-3 and the fault answers; reads ``config`` on every request so tests may flip it."""

    def __init__(self, config: TradesyncSimConfig) -> None:
        self.config = config
        self.limiter = KeyedRateLimiter(config.rate_limit_rps, config.rate_limit_burst)

    def check(self, request: web.Request) -> None:
        """Checks 1-3 of the contract: maintenance, auth, rate limit."""
        cfg = self.config
        if cfg.maintenance:
            raise Reject(503, "MAINTENANCE_MODE")
        key = self.authenticate(request.headers.get("Authorization"))
        wait = self.limiter.take(key, cfg.rate_limit_rps, cfg.rate_limit_burst)
        if wait > 0:
            retry_after = str(KeyedRateLimiter.retry_after_seconds(wait))
            headers = {"Retry-After": retry_after} if cfg.retry_after_header else None
            raise Reject(429, "TOO_MANY_REQUESTS", headers=headers)

    def authenticate(self, header: str | None) -> str:
        """The API key of an HTTP Basic header that names a known key and its secret."""
        scheme, _, token = (header or "").partition(" ")
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        key, sep, secret = decoded.partition(":")
        if scheme.lower() != "basic" or not sep:
            raise Reject(401, "AUTHORISATION_FAILED")
        if self.config.api_keys.get(key) != secret:
            raise Reject(401, "NOT_AUTHORISED")
        if key in self.config.forbidden_keys:
            raise Reject(403, "FORBIDDEN")
        return key

    def _code(self, code: str, seq: int) -> str:
        case = self.config.code_case
        if case == "lower" or (case == "mixed" and seq % 2 == 0):
            return code.lower()
        return code

    def error_body(self, status: int, code: str, seq: int, errors: dict[str, list[str]] | None = None) -> bytes:
        body: dict[str, Any] = {"result": "error" if status >= 500 else "fail", "status": status,
                                "code": self._code(code, seq), "message": MESSAGES[code], "data": []}
        if errors:
            body["errors"] = errors  # simulator-only detail; clients must not rely on it
        return orjson.dumps(body)

    def error(self, reject: Reject, seq: int) -> web.Response:
        body = self.error_body(reject.status, reject.code, seq, reject.errors)
        return web.Response(status=reject.status, body=body, content_type="application/json", headers=reject.headers)

    def fault(self, request: web.Request, plan: RequestPlan) -> tuple[web.StreamResponse, int | None]:
        """The answer to a planned fault, and its status (None: the connection is dropped)."""
        kind = plan.fault or "500"
        if kind == "drop":
            return drop_connection(request), None
        if kind == "html502":
            return html_502_response(), 502
        status, code = _FAULT_ERRORS[kind]
        headers = {"Retry-After": str(plan.retry_after)} if kind == "429-retry-after" else None
        body = self.error_body(status, code, plan.seq)
        return web.Response(status=status, body=body, content_type="application/json", headers=headers), status
