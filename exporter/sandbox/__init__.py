"""Local simulators of the broker APIs, used by tests, benchmarks and demos."""
