"""Prometheus metrics: request outcomes and per-stage latency."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Sub-millisecond buckets: the model and serialisation stages take microseconds.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    """One registry per server, so several servers in one process never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "shoprank_rank_requests",
            "Rank calls by final status code.",
            ["code"],
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "shoprank_rank_stage_seconds",
            "Time per stage of a Rank call: fetch (user read, item cache), score "
            "(similarity, bias, model inputs), model (ONNX), rank (top-k), serialise, total.",
            ["stage"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "shoprank_rank_in_flight", "Rank calls being served.", registry=self.registry
        )
        self.candidates = Histogram(
            "shoprank_rank_candidates",
            "Candidates per Rank call.",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000),
            registry=self.registry,
        )

        # Labelled children resolved once: a labels() lookup per call costs microseconds.
        self._stages: dict[str, Histogram] = {}
        self._codes: dict[str, Counter] = {}

    def observe_stages(self, timings: dict[str, float]) -> None:
        for stage, seconds in timings.items():
            child = self._stages.get(stage)
            if child is None:
                child = self._stages[stage] = self.stage_seconds.labels(stage)
            child.observe(seconds)

    def count(self, code: str) -> None:
        child = self._codes.get(code)
        if child is None:
            child = self._codes[code] = self.requests.labels(code)
        child.inc()

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)
