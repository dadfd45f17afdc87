"""Request counters, as the ``/_sim/state`` control route shows them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class RequestStats:
    """Counts of API requests, answers by status and injected faults; in-flight requests.

    Statuses are counted by their text (``"200"``, or ``"drop"`` for a connection a simulator
    closes on purpose), as they appear in the JSON state.
    """

    requests_total: int = 0
    faults_injected: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    responses_by_status: Counter[str] = field(default_factory=Counter)
    faults_by_kind: Counter[str] = field(default_factory=Counter)

    def enter(self) -> int:
        """Count a new API request and return its 1-based sequence number."""
        self.requests_total += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        return self.requests_total

    def answered(self, status: int | str) -> None:
        self.responses_by_status[str(status)] += 1

    def leave(self, status: int | str | None = None) -> None:
        """The request is done; ``status`` (if any, and not counted yet) is what it answered."""
        self.in_flight -= 1
        if status is not None:
            self.answered(status)

    def fault(self, kind: str) -> None:
        self.faults_injected += 1
        self.faults_by_kind[kind] += 1

    def reset(self) -> None:
        # Requests still being handled keep counting so in_flight never goes negative.
        self.requests_total = 0
        self.faults_injected = 0
        self.responses_by_status = Counter()
        self.faults_by_kind = Counter()
        self.peak_in_flight = self.in_flight

    def snapshot(self) -> dict[str, object]:
        return {
            "requests_total": self.requests_total,
            "responses_by_status": dict(sorted(self.responses_by_status.items())),
            "faults_injected": self.faults_injected,
            "faults_by_kind": dict(sorted(self.faults_by_kind.items())),
            "peak_in_flight": self.peak_in_flight,
            "in_flight": self.in_flight,
        }
