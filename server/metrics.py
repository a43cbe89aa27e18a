"""Prometheus metrics: request outcomes and per-stage latency."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

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
        self.stage_seconds = StageHistograms()
        self.registry.register(self.stage_seconds)
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
        self._codes: dict[str, Counter] = {}

    def observe_stages(self, timings: dict[str, float]) -> None:
        self.stage_seconds.observe(timings)

    def count(self, code: str) -> None:
        child = self._codes.get(code)
        if child is None:
            child = self._codes[code] = self.requests.labels(code)
        child.inc()

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)


class StageHistograms:
    """shoprank_rank_stage_seconds{stage}: a histogram per stage, kept as plain counts.

    observe() is a bisect and two additions per stage, where prometheus_client's
    Histogram.observe took about a microsecond a stage behind its locks, six times
    a call. The event loop is the one writer; a scrape, on the metrics thread,
    reads the counts as they are (at worst one observation from consistent).
    """

    NAME = "shoprank_rank_stage_seconds"
    HELP = (
        "Time per stage of a Rank call: fetch (user read, item cache), score "
        "(similarity, bias, model inputs), model (ONNX), rank (top-k), serialise, total."
    )

    def __init__(self) -> None:
        self._counts: dict[str, list[int]] = {}  # per bucket, the last one +Inf
        self._sums: dict[str, float] = {}

    def observe(self, timings: dict[str, float]) -> None:
        for stage, seconds in timings.items():
            counts = self._counts.get(stage)
            if counts is None:
                counts = self._counts[stage] = [0] * (len(BUCKETS) + 1)
                self._sums[stage] = 0.0
            counts[bisect_left(BUCKETS, seconds)] += 1  # the first bucket it is <= to
            self._sums[stage] += seconds

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.NAME, self.HELP, labels=["stage"])
        for stage, counts in list(self._counts.items()):
            cumulative = list(accumulate(counts))
            bounds = [*(floatToGoString(b) for b in BUCKETS), "+Inf"]
            family.add_metric(
                [stage], list(zip(bounds, cumulative, strict=True)), self._sums[stage]
            )
        yield family
