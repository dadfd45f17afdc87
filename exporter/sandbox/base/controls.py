"""The simulator-only control routes (no auth, no rate limit, no faults):

``GET /_sim/state`` (clock and counters), ``POST /_sim/advance?seconds=N`` (move the virtual clock
forward; answers the new state), ``POST /_sim/reset`` (clock back to the start, counters and
fault sequence afresh; answers the new state).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web


def parse_seconds(raw: str | None) -> float:
    """The ``seconds`` of ``/_sim/advance``: a finite number >= 0, else ``ValueError``."""
    try:
        value = float(raw) if raw is not None else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError("seconds must be a non-negative number")
    return value


def _json_error(message: str, status: int) -> web.Response:
    return web.json_response({"error": message}, status=status)


class SimControls:
    """Serves the control routes for one simulator.

    ``bad_request`` writes the 400 answer to a bad ``seconds`` in the simulator's own error style.
    """

    def __init__(self, state: Callable[[], dict[str, Any]], advance: Callable[[float], None],
                 reset: Callable[[], None], *, encode: Callable[[Any], bytes] = orjson.dumps,
                 bad_request: Callable[[str], web.Response] | None = None) -> None:
        self._state, self._advance, self._reset = state, advance, reset
        self._encode = encode
        self._bad_request = bad_request or (lambda message: _json_error(message, 400))

    def respond(self, request: web.Request) -> web.Response:
        routes: dict[str, tuple[str, Callable[[], None]]] = {
            "/_sim/state": ("GET", lambda: None),
            "/_sim/advance": ("POST", lambda: self._advance(parse_seconds(request.query.get("seconds")))),
            "/_sim/reset": ("POST", self._reset),
        }
        entry = routes.get(request.path.rstrip("/"))
        if entry is None:
            return _json_error("unknown control route", 404)
        if request.method != entry[0]:
            return _json_error("method not allowed", 405)
        try:
            entry[1]()
        except ValueError as exc:
            return self._bad_request(str(exc))
        return web.Response(body=self._encode(self._state()), content_type="application/json")

    async def handle(self, request: web.Request) -> web.Response:
        """``respond`` as an aiohttp handler, for an app that routes ``/_sim/…`` on its own."""
        return self.respond(request)
