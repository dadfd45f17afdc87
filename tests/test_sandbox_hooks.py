"""The Tradesync simulator's public account-page hooks, and the benchmark simulator built on them
(``bench/sim.py``), over real HTTP."""

from __future__ import annotations

import base64
import importlib.util
import sys
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from exporter.sandbox.base import run_simulator_in_thread
from exporter.sandbox.tradesync import ListQuery, TradesyncSimConfig, TradesyncSimulator

ROOT = Path(__file__).resolve().parents[1]
AUTH = "Basic " + base64.b64encode(b"sim-key:sim-secret").decode()


def _get(base: str, path: str) -> bytes:
    request = urllib.request.Request(base + path, headers={"Authorization": AUTH})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def test_an_account_page_source_is_asked_for_pages_the_cache_does_not_hold() -> None:
    sim = TradesyncSimulator(TradesyncSimConfig(accounts=30, trades_per_account=3, rate_limit_rps=0))
    asked: list[tuple[ListQuery, datetime]] = []

    def source(query: ListQuery, clock: datetime) -> bytes | None:
        asked.append((query, clock))
        return b'{"from":"the source"}' if query.limit == 7 else None

    with run_simulator_in_thread(sim.make_app) as base:
        before = _get(base, "/accounts?order=asc&limit=5")  # rendered and cached before the source exists
        sim.account_pages = source
        assert _get(base, "/accounts?order=asc&limit=7") == b'{"from":"the source"}'
        declined = _get(base, "/accounts?order=asc&limit=9&last_id=1241420")
        assert _get(base, "/accounts?order=asc&limit=5") == before  # the cache answers first
        sim.account_pages = None
        desc = _get(base, "/accounts?limit=4")
    assert [(q.order, q.limit, q.last_id) for q, _ in asked] == [("asc", 7, None), ("asc", 9, 1241420)]
    assert {clock for _, clock in asked} == {sim.clock}
    # a declined page, and pages without a source, are the simulator's own rendering
    assert declined == sim.render_accounts_page(ListQuery("asc", 9, 1241420))
    assert before == sim.render_accounts_page(ListQuery("asc", 5, None))
    assert desc == sim.render_accounts_page(ListQuery("desc", 4, None))
    assert b'"count":9' in declined and b'"count":4' in desc


@pytest.fixture
def bench_sim(monkeypatch: pytest.MonkeyPatch):
    spec = importlib.util.spec_from_file_location("bench_sim_under_test", ROOT / "bench" / "sim.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its msgspec structs look their module up
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_simulator_serves_the_stock_bytes(bench_sim) -> None:
    config = TradesyncSimConfig(accounts=2_500, trades_per_account=0, rate_limit_rps=0)
    warm, stock = bench_sim.WarmSimulator(config), TradesyncSimulator(config)
    assert warm.account_pages is not None  # pages come from its pre-rendered rows
    ids = stock.account_ids()
    paths = ["/accounts?order=asc&limit=1000", f"/accounts?order=asc&limit=1000&last_id={ids[999]}",
             f"/accounts?order=asc&limit=1000&last_id={ids[-1]}", "/accounts?limit=7",
             f"/accounts?limit=333&last_id={ids[1234]}", f"/accounts?order=asc&limit=50&last_id={ids[0] - 1}"]
    with run_simulator_in_thread(warm.make_app) as a, run_simulator_in_thread(stock.make_app) as b:
        for path in paths:
            assert _get(a, path) == _get(b, path), path
        urllib.request.urlopen(urllib.request.Request(a + "/_bench/latency?ms=3", method="POST"), timeout=10).read()
        for sim_url in (a, b):  # a later clock: the pre-rendered rows no longer apply
            urllib.request.urlopen(urllib.request.Request(sim_url + "/_sim/advance?seconds=7200", method="POST"),
                                   timeout=10).read()
        assert _get(a, "/accounts?order=asc&limit=20") == _get(b, "/accounts?order=asc&limit=20")
    assert warm.config.latency_ms == 3
