"""The HTTP client of one source: one aiohttp session, bounded concurrency, pacing, retries.

Every request of a source goes through :meth:`HttpClient.request`, which
- holds one of ``concurrency`` slots while the request is on the wire (the in-flight bound),
- waits for a pacing slot shared by all tasks of the source (:class:`~exporter.ratelimit.Pacer`,
  or :class:`~exporter.probing.ProbingPacer` for an API that blocks a token after violations),
- retries 429/500/502/503/504, timeouts, dropped connections and undecodable bodies with
  exponential backoff and full jitter, honouring ``Retry-After`` (seconds or an HTTP date),
- fails at once on 401/403 (after the auth plug-in had its one chance to log in again),
- decodes the body with the caller's ``decode`` inside the retry loop, so an HTML page from a proxy
  is retried like any transient error instead of crashing the run.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import logging
import os
import random
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

import aiohttp

from .errors import AuthError, DataError, HTTPError, RequestRejected, RetriesExhausted
from .probing import ProbingPacer
from .ratelimit import Pacer, Ticket

log = logging.getLogger("exporter.http")

T = TypeVar("T")

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
# the request's parameters are refused (Tradesync 422 VALIDATION_FAIL, TraderEvolution 400/406)
REJECTED_STATUSES = frozenset({400, 406, 422})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped by attempts and by total time per request."""

    max_attempts: int = 8
    max_elapsed: float = 300.0
    base_delay: float = 0.25
    max_delay: float = 30.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**attempt)], never exactly zero."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return max(0.01, rng.uniform(0, ceiling))


@dataclass
class RequestStats:
    """Counters that end up in the manifest."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    errors: Counter = field(default_factory=Counter)
    bytes: int = 0
    logins: int = 0
    blocks: int = 0  # refused probes: a blocked token paused the source
    pacers: dict[str, Pacer | ProbingPacer] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "http_429": self.throttled,
            "errors": dict(sorted(self.errors.items())),
            "bytes_received": self.bytes,
            "logins": self.logins,
            "token_blocks": self.blocks,
            **self.settled(),
        }

    def settled(self) -> dict[str, Any]:
        """The rate each pacer learned (per collection, or ``all``), to configure as ``rps``: with no
        rps configured, or cut below a limit it met (``rps_limit_met``; the others may go faster).
        A configured rate that no 429 ever cut is not listed: it is in the job already."""
        pacers = sorted(
            (key or "all", p)
            for key, p in self.pacers.items()
            if p.rate is not None and (p.ceiling is None or p.limit_found)
        )
        return {
            "settled_rps": {key: round(p.rate, 2) for key, p in pacers},
            "rps_limit_met": [key for key, p in pacers if p.limit_found],
        }


def settled_summary(stats: Mapping[str, Any]) -> str | None:
    """One line for the end-of-run summary: the rate each pacer settled at, to configure as ``rps``."""
    rates = stats.get("settled_rps") or {}
    if not rates:
        return None
    met = set(stats.get("rps_limit_met") or ())
    parts = [f"{key} {rate:g}/s" + ("" if key in met else " (no limit met)") for key, rate in rates.items()]
    return "settled rate, to configure as rps: " + ", ".join(parts)


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str


class Auth(Protocol):
    """How a source authenticates. ``on_unauthorized`` returns True if the request may be retried."""

    async def headers(self, client: HttpClient) -> dict[str, str]: ...

    async def on_unauthorized(self, client: HttpClient, response: Response) -> bool: ...


class ErrorReader(Protocol):
    """Turns an error response into a short readable text (the API's code and message)."""

    def __call__(self, response: Response) -> str: ...


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP date; None if absent/garbled."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True)
class ProbeSettings:
    """Find the rate limit by probing from below (:mod:`exporter.probing`), for an API that blocks a
    token after repeated violations; ``block_wait`` pauses the source when the probe is refused."""

    start_rps: float  # where to start when no rps is configured
    block_wait: float  # x1..x4 when blocked again right after


@dataclass
class ClientSettings:
    base_url: str
    concurrency: int = 8
    rps: float | None = None
    adaptive_rate: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    verify_tls: bool = True
    ca_bundle: str | None = None
    user_agent: str = "brokerexport"
    # TraderEvolution limits each collection separately: pace per first path segment
    pace_per_collection: bool = False
    # where base_url came from ("TRADESYNC_BASE_URL"), named when its host cannot be reached
    base_url_from: str = ""
    probing: ProbeSettings | None = None


class HttpClient:
    """One aiohttp session per source, shared by all of its tasks.

    >>> async with HttpClient(settings, auth=BasicAuth(key, secret), read_error=reader) as client:
    ...     page = await client.request("GET", "/accounts", params={"order": "asc"}, decode=decoder)
    """

    def __init__(
        self,
        settings: ClientSettings,
        *,
        auth: Auth,
        read_error: ErrorReader,
        auth_hint: str = "",
        on_response: Callable[[Response], float | None] | None = None,
        seed: int | None = None,
    ) -> None:
        self.settings = settings
        self.auth = auth
        self.read_error = read_error
        self.auth_hint = auth_hint
        # a source may ask for a longer pause than Retry-After says (a blocked token, say)
        self.on_response = on_response
        self.pacers: dict[str, Pacer | ProbingPacer] = {}
        self.stats = RequestStats(pacers=self.pacers)
        self._blocked_until = -1e9
        self._block_streak = 0
        self._slots = asyncio.Semaphore(max(1, settings.concurrency))
        self._rng = random.Random(seed)
        self._session: aiohttp.ClientSession | None = None
        self.in_flight = 0
        self.peak_in_flight = 0
        self._answered = False  # the server has answered once: later connect failures are outages
        # told (seconds, reason) when this source's requests are held back: the progress display
        self.on_pause: Callable[[float, str], None] | None = None
        self._pause_reason = "rate limited"

    async def __aenter__(self) -> HttpClient:
        connector = aiohttp.TCPConnector(
            limit=max(1, self.settings.concurrency),
            ssl=self._ssl_context(),
            ttl_dns_cache=300,
        )
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.settings.connect_timeout,
            sock_read=self.settings.read_timeout,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers={"User-Agent": self.settings.user_agent, "Accept": "application/json"},
            raise_for_status=False,
            auto_decompress=True,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _ssl_context(self) -> ssl.SSLContext | bool:
        if not self.settings.verify_tls:
            return False
        if self.settings.ca_bundle:
            return ssl.create_default_context(cafile=self.settings.ca_bundle)
        return True

    def pacer(self, path: str) -> Pacer | ProbingPacer:
        """The pacer that governs ``path``: one per source, or one per collection."""
        key = path.strip("/").split("/", 1)[0] if self.settings.pace_per_collection else ""
        pacer = self.pacers.get(key)
        if pacer is None:
            probing = self.settings.probing
            if probing is not None:
                pacer = ProbingPacer(self.settings.rps, start=probing.start_rps)
            else:
                pacer = Pacer(self.settings.rps, adaptive=self.settings.adaptive_rate)
            pacer.on_pause = self._paused
            self.pacers[key] = pacer
        return pacer

    def _paused(self, seconds: float) -> None:
        if self.on_pause is not None:
            self.on_pause(seconds, self._pause_reason)

    def pause_all(self, seconds: float, reason: str = "rate limited") -> None:
        """Hold every request of this source back (a blocked token, a Retry-After)."""
        if not self.pacers:
            self.pacer("")
        self._pause_reason = reason  # what the pacers' pause hook passes on
        for pacer in self.pacers.values():
            pacer.pause(seconds)

    def url(self, path: str) -> str:
        return self.settings.base_url.rstrip("/") + "/" + path.lstrip("/")

    async def send_once(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        read_timeout: float | None = None,
    ) -> Response:
        """One exchange, no retries, no auth header: raw access used by auth plug-ins (login)."""
        assert self._session is not None, "HttpClient used outside 'async with'"
        url = self.url(path)
        self.stats.requests += 1
        extra: dict[str, Any] = {}
        if read_timeout is not None:  # a heavy report may think for minutes before its first byte
            extra["timeout"] = aiohttp.ClientTimeout(total=None, sock_connect=self.settings.connect_timeout,
                                                     sock_read=read_timeout)
        async with self._session.request(method, url, params=params, headers=headers, json=json, **extra) as resp:
            self._answered = True
            body = await resp.read()
            self.stats.bytes += len(body)
            return Response(resp.status, resp.headers, body, str(resp.url))

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        decode: Callable[[Response], T],
        read_timeout: float | None = None,
        max_attempts: int | None = None,
    ) -> T:
        """Send with retries; return ``decode(response)`` of the first good 2xx response.

        ``read_timeout`` and ``max_attempts`` override the client's for this request (a slow
        report gets longer to answer, and fewer repeats of the same heavy query before its window
        is split instead)."""
        policy = self.settings.retry
        if max_attempts is not None:
            policy = replace(policy, max_attempts=max_attempts)
        started = time.monotonic()
        attempt = 0  # sends of this request
        counted = 0  # the ones that count against max_attempts
        reauthenticated = False
        while True:
            attempt += 1
            ticket: Ticket | None = None
            try:
                response, ticket = await self._exchange(method, path, params, read_timeout)
                status = response.status
                if status in (401, 403):
                    if not reauthenticated and await self.auth.on_unauthorized(self, response):
                        reauthenticated = True
                        attempt -= 1
                        continue
                    raise AuthError(self._auth_message(response))
                if 200 <= status < 300:
                    try:
                        value = decode(response)
                    except DataError as exc:
                        raise HTTPError(
                            f"undecodable {status} response: {exc}", status=status, transient=True
                        ) from exc
                    self.pacer(path).on_success(ticket)
                    return value
                raise self._status_error(path, response, ticket)
            except HTTPError as exc:
                if not exc.transient:
                    raise
                failure = exc
            except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
                # retrying cannot fix a certificate; say what can
                raise HTTPError(
                    f"TLS failure talking to {self.settings.base_url}: {exc}. For a self-signed server set "
                    "the source's ca_bundle (a PEM file), or verify_tls = false to skip verification"
                ) from None
            except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                kind = type(exc).__name__
                self.stats.errors[kind] += 1
                if isinstance(exc, aiohttp.ClientConnectorError):
                    failure = self._connect_failure(exc)  # raises where retrying cannot help
                else:
                    failure = HTTPError(f"{kind}: {exc}" if str(exc) else kind, transient=True)
            finally:
                self.pacer(path).release(ticket)
            # a 429 that says when to come back is obeyed, not counted: only the time budget applies
            if not (failure.status == 429 and failure.retry_after):
                counted += 1
            delay = self._retry_delay(path, failure, max(1, counted))
            elapsed = time.monotonic() - started
            if counted >= policy.max_attempts or elapsed + delay > policy.max_elapsed:
                raise RetriesExhausted(
                    f"{method} {path} failed after {attempt} attempts in {elapsed:.1f}s; last error: {failure}"
                ) from failure
            self.stats.retries += 1
            log.debug("retrying %s %s in %.2fs after: %s", method, path, delay, failure)
            await asyncio.sleep(delay)

    async def _exchange(
        self, method: str, path: str, params: Mapping[str, str] | None, read_timeout: float | None = None
    ) -> tuple[Response, Ticket | None]:
        async with self._slots:
            pacer = self.pacer(path)
            ticket = await pacer.acquire()
            try:
                headers = await self.auth.headers(self)
                self.in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
                try:
                    response = await self.send_once(method, path, params=params, headers=headers,
                                                    read_timeout=read_timeout)
                finally:
                    self.in_flight -= 1
            except BaseException:
                pacer.release(ticket)  # a probe that got no answer is sent again
                raise
        return response, ticket

    def _status_error(self, path: str, response: Response, ticket: Ticket | None = None) -> HTTPError:
        status = response.status
        detail = self.read_error(response)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if self.on_response is not None:
            floor = self.on_response(response)
            if floor is not None:
                retry_after = max(retry_after or 0.0, floor)
        if status == 429:
            self.stats.throttled += 1
            if self.pacer(path).on_throttled(ticket, told_to_wait=bool(retry_after)):
                retry_after = max(retry_after or 0.0, self._block_pause())
        transient = status in TRANSIENT_STATUSES
        self.stats.errors[f"http_{status}"] += 1
        kind = RequestRejected if status in REJECTED_STATUSES else HTTPError
        return kind(
            f"HTTP {status} from {_path_only(response.url)}: {detail}",
            status=status,
            transient=transient,
            retry_after=retry_after,
            url=response.url,
        )

    def _retry_delay(self, path: str, failure: HTTPError, attempt: int) -> float:
        if failure.retry_after is not None and failure.retry_after > 0:
            # the server said exactly how long; everybody on this source waits that long
            self.pause_all(failure.retry_after, "rate limited" if failure.status == 429 else "server busy")
            return failure.retry_after
        delay = self.settings.retry.backoff(attempt, self._rng)
        if failure.status == 429:
            self._pause_reason = "rate limited"  # what a pacer's pause hook passes on
            self.pacer(path).backoff(delay)
        return delay

    def _connect_failure(self, exc: aiohttp.ClientConnectorError) -> HTTPError:
        """No connection to the host. Before the server ever answered, a refused loopback port or
        a name that does not exist is a set-up mistake that no retry fixes: fail at once, naming
        the variable that set the host. Anything else is retried like an outage."""
        error = exc.os_error
        code = error.errno if isinstance(error.errno, int) else 0
        reason = os.strerror(code) if code > 0 else error.strerror or str(error)
        origin = f" (the host of {self.settings.base_url_from})" if self.settings.base_url_from else ""
        message = f"cannot connect to {exc.host}:{exc.port}{origin}: {reason}"
        if not self._answered and _hopeless(exc):
            raise HTTPError(message) from None
        return HTTPError(message, transient=True)

    def _block_pause(self) -> float:
        """A refused probe: the token is blocked. Pause the whole source ``block_wait``, longer (x2..x4)
        when blocked again right after the last pause; a block another collection already found
        costs no extra wait."""
        wait = self.settings.probing.block_wait if self.settings.probing else 0.0
        now = time.monotonic()
        if now < self._blocked_until:
            return self._blocked_until - now
        again = now - self._blocked_until < max(1.0, wait)
        self._block_streak = self._block_streak + 1 if again else 1
        self.stats.blocks += 1
        self._blocked_until = now + wait * min(self._block_streak, 4)
        return self._blocked_until - now

    def _auth_message(self, response: Response) -> str:
        detail = self.read_error(response)
        what = "permission denied" if response.status == 403 else "authentication failed"
        hint = f"; {self.auth_hint}" if self.auth_hint else ""
        return f"{what} (HTTP {response.status} {detail}){hint}"


def _hopeless(exc: aiohttp.ClientConnectorError) -> bool:
    """A name that does not resolve (not a temporary DNS failure), or a refused loopback port."""
    error = exc.os_error
    if isinstance(error, socket.gaierror):
        return error.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME))
    if not isinstance(error, ConnectionRefusedError):
        return False
    if exc.host == "localhost":
        return True
    try:
        return ipaddress.ip_address(exc.host.strip("[]")).is_loopback
    except ValueError:
        return False


def _path_only(url: str) -> str:
    """The URL without its query string: parameters never go into messages."""
    return url.split("?", 1)[0]
