"""Prometheus metrics: request outcomes and per-stage latency.

Every per-call update is a plain addition on the event loop, the one writer;
the collectors turn the counts into Prometheus families at scrape time, on the
metrics thread (at worst one observation from consistent). prometheus_client's
own Counter, Gauge and Histogram take a lock per update: about 2.5% of a loaded
server's CPU, measured.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Callable, Iterator
from itertools import accumulate

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.utils import floatToGoString

# Sub-millisecond buckets: the model and serialisation stages take microseconds.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
CANDIDATE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000)
# A minute to a month: streamed features are seconds old, batch ones hours to days.
AGE_BUCKETS = (60.0, 600.0, 3600.0, 6 * 3600.0, 86400.0, 3 * 86400.0, 7 * 86400.0, 30 * 86400.0)


class Metrics:
    """One registry per server, so several servers in one process never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counts("shoprank_rank_requests", "Rank calls by final status code.", "code")
        self.stage_seconds = Histograms(
            "shoprank_rank_stage_seconds",
            "Time per stage of a Rank call: user_read, then each ranking stage by its "
            "name (gather_items ... top_k, see server/ranking/build.py), serialise, total.",
            BUCKETS,
            "stage",
        )
        self.candidates = Histograms(
            "shoprank_rank_candidates", "Candidates per Rank call.", CANDIDATE_BUCKETS
        )
        self.in_flight = Reading("shoprank_rank_in_flight", "Rank calls being served.")
        self.shed = ReadCounter(
            "shoprank_rank_shed", "Rank calls shed (RESOURCE_EXHAUSTED) at the in-flight limit."
        )
        self.cache_hits = ReadCounter(
            "shoprank_item_cache_hits", "Item lookups the in-memory cache answered."
        )
        self.cache_misses = ReadCounter(
            "shoprank_item_cache_misses", "Item lookups read from the online store instead."
        )
        self.cache_items = Reading("shoprank_item_cache_items", "Items held in the cache.")
        self.cache_age = Reading(
            "shoprank_item_cache_age_seconds",
            "Seconds since the item cache was filled from the online store: the age of "
            "every item feature served.",
        )
        self.refresh_failures = ReadCounter(
            "shoprank_item_cache_refresh_failures",
            "Cache refreshes that could not read the registry or the store; the previous "
            "table keeps serving.",
        )
        self.query_hits = ReadCounter(
            "shoprank_query_encoder_cache_hits",
            "Query vectors the query cache answered (semantic search).",
        )
        self.query_misses = ReadCounter(
            "shoprank_query_encoder_cache_misses",
            "Queries the language model encoded: cache misses (semantic search).",
        )
        self.user_age = Histograms(
            "shoprank_user_feature_age_seconds",
            "Age of the user features served: the request time minus the row's event time "
            "(known users only).",
            AGE_BUCKETS,
        )
        self.user_reads = ReadCounts(
            "shoprank_user_reads",
            "Rank calls by how their user features were served: fresh from the online store, "
            "stale (the store failed; the row as read recently) or degraded (cold start).",
            "served",
        )
        self.store_up = Reading(
            "shoprank_feature_store_up",
            "1 while user reads go to the online store; 0 while it is held down after "
            "failures and probed until it answers.",
        )
        self.grpc_calls = GrpcCalls()
        self.model = Info("shoprank_model", "The model version this server serves.", "version")
        self.rejected_models = Counts(
            "shoprank_model_rejected", "Model versions refused by a hot swap.", "version"
        )
        self.denied = Counts(
            "shoprank_auth_denied", "Calls refused UNAUTHENTICATED, by method.", "method"
        )
        self.event_calls = Counts(
            "shoprank_log_events_requests", "LogEvents calls by final status code.", "code"
        )
        self.events = Counts(
            "shoprank_events",
            "Events sent to LogEvents, by outcome: accepted (written to the event log), "
            "duplicate (an id accepted before) or rejected (the response gives the reason).",
            "outcome",
        )
        for collector in (
            self.event_calls,
            self.events,
            self.requests,
            self.stage_seconds,
            self.candidates,
            self.in_flight,
            self.shed,
            self.cache_hits,
            self.cache_misses,
            self.cache_items,
            self.cache_age,
            self.refresh_failures,
            self.query_hits,
            self.query_misses,
            self.user_age,
            self.user_reads,
            self.store_up,
            self.grpc_calls,
            self.denied,
            self.model,
            self.rejected_models,
        ):
            self.registry.register(collector)

    def observe_stages(self, timings: dict[str, float]) -> None:
        self.stage_seconds.observe_all(timings)

    def count(self, code: str) -> None:
        self.requests.inc(code)

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)


class Histograms:
    """A histogram per label value (or one, unlabelled), kept as plain counts:
    observe() is a bisect and two additions."""

    def __init__(
        self, name: str, help: str, buckets: tuple[float, ...], label: str | None = None
    ) -> None:
        self._name = name
        self._help = help
        self._buckets = buckets
        self._labels = [label] if label else []
        self._counts: dict[str, list[int]] = {}  # per bucket, the last one +Inf
        self._sums: dict[str, float] = {}

    def observe(self, value: float, key: str = "") -> None:
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = [0] * (len(self._buckets) + 1)
            self._sums[key] = 0.0
        counts[bisect_left(self._buckets, value)] += 1  # the first bucket it is <= to
        self._sums[key] += value

    def observe_all(self, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.observe(value, key)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self._name, self._help, labels=self._labels)
        bounds = [*(floatToGoString(b) for b in self._buckets), "+Inf"]
        for key, counts in list(self._counts.items()):
            cumulative = list(accumulate(counts))
            family.add_metric(
                [key] if self._labels else [],
                list(zip(bounds, cumulative, strict=True)),
                self._sums[key],
            )
        yield family


class Counts:
    """A counter per label value, kept as plain integers."""

    def __init__(self, name: str, help: str, label: str) -> None:
        self._name = name
        self._help = help
        self._label = label
        self._counts: dict[str, int] = {}

    def inc(self, key: str, by: int = 1) -> None:
        self._counts[key] = self._counts.get(key, 0) + by

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self._name, self._help, labels=[self._label])
        for key, count in list(self._counts.items()):
            family.add_metric([key], count)
        yield family


class ReadCounts:
    """A counter per label value that its owner keeps in a dict, read at scrape time."""

    def __init__(self, name: str, help: str, label: str) -> None:
        self._name = name
        self._help = help
        self._label = label
        self._read: Callable[[], dict[str, int]] = dict

    def read_from(self, read: Callable[[], dict[str, int]]) -> None:
        self._read = read

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self._name, self._help, labels=[self._label])
        for key, count in list(self._read().items()):
            family.add_metric([key], count)
        yield family


class Reading:
    """A gauge read from its owner at scrape time: nothing to update per call."""

    def __init__(self, name: str, help: str) -> None:
        self._name = name
        self._help = help
        self._read: Callable[[], float] = lambda: 0.0

    def read_from(self, read: Callable[[], float]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self._name, self._help, value=self._read())


class ReadCounter(Reading):
    """A counter its owner keeps as a plain integer, read at scrape time."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self._name, self._help, value=self._read())


class Info:
    """One labelled value, 1, as Prometheus info metrics are: which version serves."""

    def __init__(self, name: str, help: str, label: str) -> None:
        self._name = name
        self._help = help
        self._label = label
        self._value = ""

    def show(self, value: str) -> None:
        self._value = value

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(f"{self._name}_info", self._help, labels=[self._label])
        if self._value:
            family.add_metric([self._value], 1.0)
        yield family


class GrpcCalls:
    """The calls gRPC core itself counted for this server, every method, read
    from channelz at scrape time. They include the calls no handler ever saw:
    gRPC drops a call whose deadline passed, or whose caller cancelled, before
    its request was read, and shoprank_rank_requests cannot count those."""

    def __init__(self) -> None:
        self._server_id: int | None = None

    def watch(self, server_id: int | None) -> None:
        self._server_id = server_id

    def collect(self) -> Iterator[CounterMetricFamily]:
        if self._server_id is None:
            return
        from grpc._cython import cygrpc  # channelz has no public Python API but its service

        data = json.loads(cygrpc.channelz_get_server(self._server_id))["server"]["data"]
        for key, name in (
            ("callsStarted", "started"),
            ("callsSucceeded", "succeeded"),
            ("callsFailed", "failed"),
        ):
            yield CounterMetricFamily(
                f"shoprank_grpc_server_calls_{name}",
                f"gRPC calls {name} on this server, every method (gRPC core's channelz).",
                value=int(data.get(key, 0)),
            )


def channelz_server_ids() -> set[int]:
    """The ids of every gRPC server in this process, as channelz numbers them."""
    from grpc._cython import cygrpc

    servers = json.loads(cygrpc.channelz_get_servers(0)).get("server", [])
    return {int(server["ref"]["serverId"]) for server in servers}
