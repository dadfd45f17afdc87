"""Edge cases of the HTTP client and the Tradesync page decoder, with aioresponses (no server)."""

from __future__ import annotations

import json
import re
import time
from email.utils import formatdate

import pytest
from aioresponses import aioresponses

from exporter.errors import AuthError, HTTPError, RetriesExhausted
from exporter.http import ClientSettings, HttpClient, RetryPolicy, parse_retry_after
from exporter.jobs import SourceSpec
from exporter.sources.tradesync import BasicAuth, TradesyncSource, decode_list_page

BASE = "http://api.test"
URL = re.compile(r"^http://api\.test/accounts.*$")
pytestmark = pytest.mark.anyio


def page(ids: list[int], limit: int = 1000) -> dict:
    return {
        "result": "success",
        "status": 200,
        "meta": {"count": len(ids), "limit": limit, "order": "asc", "last_id": ids[-1] if ids else None},
        "data": [{"id": i, "balance": 1.5} for i in ids],
    }


def client(**retry: float) -> HttpClient:
    source = TradesyncSource(SourceSpec("tradesync", ("accounts",), 4, None, 1000))
    policy = RetryPolicy(**{"base_delay": 0.001, "max_delay": 0.01, **retry})
    return HttpClient(
        ClientSettings(BASE, concurrency=4, retry=policy),
        auth=BasicAuth("key", "s3cret-value"),
        read_error=source.read_error,
        auth_hint=source.auth_hint,
        seed=1,
    )


async def get(c: HttpClient):
    return await c.request("GET", "/accounts", params={"order": "asc"}, decode=decode_list_page)


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = time.time()
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0


async def test_success_decodes_raw_objects_and_ids() -> None:
    with aioresponses() as mock:
        mock.get(URL, payload=page([3, 5, 9]))
        async with client() as c:
            result = await get(c)
    assert result.ids == [3, 5, 9]
    assert json.loads(bytes(result.objects[0])) == {"id": 3, "balance": 1.5}
    assert result.meta_limit == 1000


async def test_html_502_from_a_proxy_is_retried_then_succeeds() -> None:
    with aioresponses() as mock:
        mock.get(URL, status=502, body="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
        mock.get(URL, status=200, body="<html>maintenance</html>", content_type="text/html")
        mock.get(URL, payload=page([1]))
        async with client() as c:
            result = await get(c)
            assert c.stats.retries == 2
    assert result.ids == [1]


async def test_malformed_page_exhausts_retries_with_a_clear_error() -> None:
    with aioresponses() as mock:
        mock.get(URL, payload={"result": "success", "data": "oops"}, repeat=True)
        async with client(max_attempts=3) as c:
            with pytest.raises(RetriesExhausted, match="after 3 attempts"):
                await get(c)


async def test_401_fails_fast_without_retry_and_without_the_secret() -> None:
    body = {"result": "fail", "status": 401, "code": "NOT_AUTHORISED", "message": "Authorisation failed", "data": []}
    with aioresponses() as mock:
        mock.get(URL, status=401, payload=body, repeat=True)
        async with client() as c:
            with pytest.raises(AuthError) as info:
                await get(c)
            assert c.stats.requests == 1
    message = str(info.value)
    assert "NOT_AUTHORISED" in message and "TRADESYNC_API_SECRET" in message
    assert "s3cret-value" not in message


async def test_403_is_an_auth_error() -> None:
    body = {"result": "fail", "status": 403, "code": "FORBIDDEN", "message": "Insufficient permissions", "data": []}
    with aioresponses() as mock:
        mock.get(URL, status=403, payload=body)
        async with client() as c:
            with pytest.raises(AuthError, match="permission denied"):
                await get(c)


@pytest.mark.parametrize(("status", "code"), [(422, "VALIDATION_FAIL"), (404, "not_found")])
async def test_other_4xx_are_not_retried(status: int, code: str) -> None:
    body = {"result": "fail", "status": status, "code": code, "message": "nope", "data": []}
    with aioresponses() as mock:
        mock.get(URL, status=status, payload=body, repeat=True)
        async with client() as c:
            with pytest.raises(HTTPError) as info:
                await get(c)
            assert c.stats.requests == 1
    assert info.value.status == status and not info.value.transient
    assert code in str(info.value)


async def test_retry_after_seconds_is_honoured() -> None:
    with aioresponses() as mock:
        mock.get(URL, status=429, headers={"Retry-After": "0.3"}, payload={"result": "fail", "data": []})
        mock.get(URL, payload=page([1]))
        async with client() as c:
            started = time.monotonic()
            await get(c)
            waited = time.monotonic() - started
            assert c.stats.throttled == 1
    assert waited >= 0.29


async def test_retry_after_zero_does_not_hot_loop() -> None:
    with aioresponses() as mock:
        mock.get(URL, status=429, headers={"Retry-After": "0"}, payload={"result": "fail", "data": []}, repeat=True)
        async with client(max_attempts=5, base_delay=0.02, max_delay=0.02) as c:
            started = time.monotonic()
            with pytest.raises(RetriesExhausted):
                await get(c)
            elapsed = time.monotonic() - started
            assert c.stats.requests == 5
    assert elapsed > 0.01  # four backoff sleeps happened; a hot loop would take ~0


async def test_dropped_connection_is_retried() -> None:
    import aiohttp

    with aioresponses() as mock:
        mock.get(URL, exception=aiohttp.ServerDisconnectedError())
        mock.get(URL, exception=TimeoutError())
        mock.get(URL, payload=page([4]))
        async with client() as c:
            result = await get(c)
            assert c.stats.retries == 2
            assert c.stats.errors["ServerDisconnectedError"] == 1
    assert result.ids == [4]


async def test_total_time_cap_stops_retrying() -> None:
    with aioresponses() as mock:
        mock.get(URL, status=503, headers={"Retry-After": "5"}, payload={"result": "error", "data": []}, repeat=True)
        async with client(max_elapsed=1.0) as c:
            with pytest.raises(RetriesExhausted, match="after 1 attempts"):
                await get(c)


def test_meta_count_mismatch_is_malformed() -> None:
    from exporter.errors import DataError
    from exporter.http import Response

    body = page([1, 2])
    body["meta"]["count"] = 5
    with pytest.raises(DataError, match=r"meta\.count"):
        decode_list_page(Response(200, {}, json.dumps(body).encode(), BASE))


def test_ids_are_read_when_id_is_not_the_first_key() -> None:
    """The leading-id shortcut only applies when "id" comes first; any other order is decoded."""
    from exporter.http import Response

    body = page([4, 8])
    body["data"] = [{"balance": 1.5, "id": 4}, {"id": 8, "balance": 2}]
    decoded = decode_list_page(Response(200, {}, json.dumps(body).encode(), BASE))
    assert decoded.ids == [4, 8]
    spaced = b'{"result":"success","data":[ { "id" : 11 , "x":1}, {"id":12}]}'
    assert decode_list_page(Response(200, {}, spaced, BASE)).ids == [11, 12]


def test_a_record_without_an_integer_id_is_malformed() -> None:
    from exporter.errors import DataError
    from exporter.http import Response

    for data in ([{"id": "7"}], [{"id": 7.5}], [{"name": "no id"}]):
        body = json.dumps({"result": "success", "data": data}).encode()
        with pytest.raises(DataError, match="not a Tradesync list page"):
            decode_list_page(Response(200, {}, body, BASE))
