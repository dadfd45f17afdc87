"""What every API simulator shares, whatever the broker: seeded faults and latency
(:mod:`.faults`), rate limits (:mod:`.limits`), request counters (:mod:`.stats`), the
``/_sim/*`` control routes (:mod:`.controls`) and the server runners (:mod:`.serving`).
"""

from .controls import SimControls, parse_seconds
from .faults import (
    ALL_FAULTS,
    NGINX_502_HTML,
    ChaosPlanner,
    RequestPlan,
    StagedFaults,
    check_fault_kinds,
    drop_connection,
    html_502_response,
    is_faulted,
    mix64,
)
from .limits import BlockingRateLimiter, KeyedRateLimiter, TokenBucket
from .serving import AppFactory, run_simulator_in_thread, serve
from .stats import RequestStats

__all__ = [
    "ALL_FAULTS",
    "NGINX_502_HTML",
    "AppFactory",
    "BlockingRateLimiter",
    "ChaosPlanner",
    "KeyedRateLimiter",
    "RequestPlan",
    "RequestStats",
    "SimControls",
    "StagedFaults",
    "TokenBucket",
    "check_fault_kinds",
    "drop_connection",
    "html_502_response",
    "is_faulted",
    "mix64",
    "parse_seconds",
    "run_simulator_in_thread",
    "serve",
]
