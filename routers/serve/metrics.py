"""Prometheus metrics of one server, in its own CollectorRegistry (two apps in one process,
as in tests, never share counters). Exposed at GET /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("baton_requests", "Chat requests by router and HTTP status",
                                ["router", "status"], registry=r)
        self.latency = Histogram("baton_request_latency_seconds", "End-to-end request latency",
                                 ["router"], buckets=LATENCY_BUCKETS, registry=r)
        self.orchestration = Histogram("baton_orchestration_latency_seconds",
                                       "Time the router's own model took per request", ["router"],
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.worker_calls = Counter("baton_worker_calls", "Worker call attempts by outcome (ok or error type)",
                                    ["worker", "outcome"], registry=r)
        self.worker_latency = Histogram("baton_worker_latency_seconds", "Worker call latency", ["worker"],
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.errors = Counter("baton_errors", "Client-visible errors by code", ["code"], registry=r)
        self.cost = Counter("baton_cost_dollars", "Worker cost in dollars", ["router", "worker"], registry=r)
        self.tokens = Counter("baton_tokens", "Tokens by kind (orchestration/worker, input/output)",
                              ["router", "kind"], registry=r)
        self.log_failures = Counter("baton_log_failures", "Decision-log writes the disk refused (the "
                                    "requests were still answered; stderr names them)", registry=r)
        self.fallbacks = Counter("baton_fallbacks", "Calls answered by a worker other than the first tried",
                                 ["router"], registry=r)

    def attempt(self, worker: str, outcome: str, latency_s: float) -> None:
        self.worker_calls.labels(worker, outcome).inc()
        self.worker_latency.labels(worker).observe(latency_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)
