"""The per-stage histograms: Prometheus's histogram semantics, held to exact counts."""

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
