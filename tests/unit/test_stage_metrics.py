"""The metrics' plain-count collectors: Prometheus's semantics, held to exact counts."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from server.metrics import BUCKETS, Metrics


def samples(metrics: Metrics) -> dict[tuple[str, str, str], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, s.labels.get("stage", ""), s.labels.get("le", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_each_stage_counts_a_value_in_every_bucket_it_is_at_most() -> None:
    metrics = Metrics()
    metrics.observe_stages({"fetch": 0.0001, "model": 0.0003})  # 0.0001 is a bucket's bound
    metrics.observe_stages({"fetch": 0.002, "model": 2.0})  # 2.0 is past the last bound
    got = samples(metrics)
    bucket = "shoprank_rank_stage_seconds_bucket"
    assert [got[(bucket, "fetch", le)] for le in ("0.0001", "0.00025", "0.001", "0.0025")] == [
        1.0,
        1.0,
        1.0,
        2.0,
    ]
    assert [got[(bucket, "model", le)] for le in ("0.00025", "0.0005", "1.0", "+Inf")] == [
        0.0,
        1.0,
        1.0,
        2.0,
    ]
    assert got[("shoprank_rank_stage_seconds_count", "fetch", "")] == 2.0
    assert got[("shoprank_rank_stage_seconds_sum", "model", "")] == 2.0003
    assert (
        sum(1 for name, stage, _ in got if name == bucket and stage == "fetch") == len(BUCKETS) + 1
    )


def test_request_counts_candidates_and_in_flight_are_exposed_as_counted() -> None:
    metrics = Metrics()
    in_flight = [3]
    metrics.in_flight.read_from(lambda: in_flight[0])
    for code in ("OK", "OK", "INVALID_ARGUMENT"):
        metrics.count(code)
    for count in (1, 100, 101, 6000):
        metrics.candidates.observe(count)
    text = generate_latest(metrics.registry).decode()
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert got[("shoprank_rank_requests_total", (("code", "OK"),))] == 2.0
    assert got[("shoprank_rank_requests_total", (("code", "INVALID_ARGUMENT"),))] == 1.0
    assert got[("shoprank_rank_in_flight", ())] == 3.0
    bucket = "shoprank_rank_candidates_bucket"
    assert [got[(bucket, (("le", le),))] for le in ("1.0", "10.0", "100.0", "250.0", "+Inf")] == [
        1.0,
        1.0,
        2.0,
        3.0,
        4.0,
    ]
    assert got[("shoprank_rank_candidates_sum", ())] == 6202.0
    in_flight[0] = 0
    assert "shoprank_rank_in_flight 0.0" in generate_latest(metrics.registry).decode()
