"""The load generator's pure parts: scenarios, recordings, the report and compare."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from server.clients.channels import Access
from server.clients.loadtest import compare, record, report, scenario, summary
from server.clients.loadtest.generator import Load, Target
from server.clients.loadtest.scenario import Population, Scenario, ScenarioError, Weighted
from server.clients.loadtest.workers import Outcome, split
from tests.fakes import report_with

POPULATION = Population(
    users=np.array([f"u{i}" for i in range(5)], dtype=object),
    items=np.array([f"i{i}" for i in range(30)], dtype=object),
    queries=np.array(["red shoes", "tea"], dtype=object),
)


def test_a_scenario_file_sets_what_it_names_and_defaults_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "users: {skew: 0.5, limit: 3}\n"
        "candidates: [{value: 10, weight: 3}, {value: 20}]\n"
        "deadlines_ms: 250\n"
        "top_k: 7\ninvalid_share: 0.25\ntoken_env: TOKEN\n"
        "tls: {ca: ca.pem, server_name: ranker.internal}\n"
    )
    got = scenario.load(path)
    assert got == Scenario(
        user_skew=0.5,
        user_limit=3,
        candidates=(Weighted(10, 3), Weighted(20, 1)),
        deadlines_ms=(Weighted(250, 1),),
        top_k=7,
        invalid_share=0.25,
        token_env="TOKEN",
        tls=scenario.Tls(ca="ca.pem", server_name="ranker.internal"),
    )
    assert got.token({"TOKEN": "s3cret"}) == "s3cret"
    assert Access(token="s3cret").metadata == (("authorization", "Bearer s3cret"),)
    assert Access().metadata == ()
    with pytest.raises(ScenarioError, match=r"^token_env: \$TOKEN is not set or empty$"):
        got.token({})
    path.write_text('{"top_k": 3}')  # JSON is YAML
    assert scenario.load(path) == Scenario(top_k=3)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"topk": 3}, "s: unknown key 'topk'; known: ["),
        ({"invalid_share": 1.5}, "s: invalid_share must be a number in [0, 1]"),
        ({"candidates": 0}, "s: candidates must be a number in [1, 1e+12]"),
        ({"candidates": [{"weight": 1}]}, "s: candidates[0] must be {value: V, weight: W}"),
        ({"top_k": True}, "s: top_k must be a number in [0, 1e+12]"),
        ({"tls": {"cert": "c.pem"}}, "s: tls.cert and tls.key go together"),
        ({"users": [1]}, "s: users must be a mapping with skew and limit"),
        (
            {"invalid_share": 0.6, "retrieval_share": 0.5},
            "s: retrieval, query and invalid shares add up to over 1",
        ),
    ],
)
def test_a_bad_scenario_names_the_key(body: dict[str, object], message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        scenario.parse(body, "s")
    assert str(caught.value).startswith(message)


def test_users_are_drawn_by_a_zipf_law_over_their_activity_rank() -> None:
    assert scenario.zipf(3, 1.0).tolist() == pytest.approx([6 / 11, 3 / 11, 2 / 11])
    assert scenario.zipf(4, 0.0).tolist() == [0.25] * 4


def test_a_pool_holds_each_kind_of_call_as_the_scenario_asks() -> None:
    plan = Scenario(
        candidates=(Weighted(4, 1), Weighted(9, 1)),
        deadlines_ms=(Weighted(50, 1), Weighted(2, 1)),
        retrieval_share=0.2,
        query_share=0.2,
        invalid_share=0.2,
        top_k=3,
        page_size=2,
        user_limit=2,
        pool=500,
    )
    pool = scenario.build_pool(plan, POPULATION)
    kinds = Counter(s.kind for s in pool)
    assert set(kinds) == set(scenario.KINDS)
    for shot in pool:
        r = shot.request
        assert (r.top_k, r.page_size) == (3, 2)
        assert r.user_id in ("", "u0", "u1")  # the two most active; "" only when broken
        if shot.kind == "retrieval":
            assert list(r.candidate_item_ids) == []
        elif shot.kind == "invalid":
            assert r.user_id == "" or r.candidate_item_ids[-1] == ""
            assert shot.deadline_s == 0.05  # the longest: it tests validation alone
        else:
            assert len(r.candidate_item_ids) in (4, 9)
            assert len(set(r.candidate_item_ids)) == len(r.candidate_item_ids)
            assert shot.deadline_s in (0.05, 0.002)
        assert bool(r.query) == (shot.kind == "search")
    # Reproducible per (seed, stream); each worker's stream differs.
    again = scenario.build_pool(plan, POPULATION)
    assert [s.request for s in again] == [s.request for s in pool]
    other = scenario.build_pool(plan, POPULATION, stream=1)
    assert [s.request for s in other] != [s.request for s in pool]


def test_queries_need_a_workspace_that_has_searches() -> None:
    no_queries = Population(users=POPULATION.users, items=POPULATION.items)
    with pytest.raises(ScenarioError, match="no queries"):
        scenario.build_pool(Scenario(query_share=0.1), no_queries)


def recording(latencies_us: list[int], codes: list[str]) -> record.Recording:
    r = record.Recording()
    for us, code in zip(latencies_us, codes, strict=True):
        # The second of the run: any function of us, so that halves merge back.
        r.record("rank", code, us % 3, us / 1e6, us / 2e6, "" if code == "OK" else "store down")
    return r


def test_recordings_of_two_workers_merge_exactly_into_one() -> None:
    values = list(range(1, 1001))
    codes = ["OK"] * 990 + ["DEADLINE_EXCEEDED"] * 10
    whole = recording(values, codes)
    a, b = recording(values[::2], codes[::2]), recording(values[1::2], codes[1::2])
    a.elapsed, b.elapsed, a.cpu_seconds, b.cpu_seconds = 2.0, 3.0, 0.5, 0.25
    merged = record.merge([a.to_json(), b.to_json()])
    assert merged.codes == whole.codes == Counter(OK=990, DEADLINE_EXCEEDED=10)
    assert merged.latency.get_total_count() == 990
    for p in report.PERCENTILES:
        assert merged.latency.get_value_at_percentile(p) == whole.latency.get_value_at_percentile(p)
    assert [s.calls for s in merged.seconds] == [s.calls for s in whole.seconds] == [333, 334, 333]
    assert (merged.elapsed, merged.cpu_seconds, merged.workers) == (3.0, 0.75, 2)


def test_error_messages_are_counted_and_bounded() -> None:
    a, b = record.Recording(), record.Recording()
    a.record("invalid", "INVALID_ARGUMENT", 0, 0.001, None, "user_id is required")
    b.record("invalid", "INVALID_ARGUMENT", 0, 0.001, None, "user_id is required")
    for i in range(record.MAX_DETAILS + 5):
        b.record("rank", "UNAVAILABLE", 0, 0.001, None, f"store down ({i})")
    merged = record.merge([a.to_json(), b.to_json()])
    assert merged.details[("INVALID_ARGUMENT", "user_id is required")] == 2
    assert len(b.details) == record.MAX_DETAILS  # the rest are counted by code alone
    assert merged.codes["UNAVAILABLE"] == record.MAX_DETAILS + 5


def test_percentiles_and_bins_hold_exact_values() -> None:
    # Below 2048 us the histogram is exact at 3 digits.
    r = recording(list(range(1, 1001)), ["OK"] * 1000)
    assert report.percentiles(r.latency) == {
        "p10": 0.1,
        "p25": 0.25,
        "p50": 0.5,
        "p75": 0.75,
        "p90": 0.9,
        "p95": 0.95,
        "p99": 0.99,
        "p99.9": 0.999,
    }
    tens = recording([100 * k for k in range(1, 11)], ["OK"] * 10)
    assert report.bins(tens.latency) == [
        {"mark_ms": round(0.1 + 0.09 * (i + 1), 4), "count": 1, "share": 0.1} for i in range(10)
    ]


def test_a_load_is_split_over_workers_as_evenly_as_whole_numbers_allow() -> None:
    loads = split(Load(concurrency=5, requests=301, connections=3), 2)
    assert [(x.concurrency, x.requests, x.connections) for x in loads] == [(3, 151, 2), (2, 150, 1)]
    assert [x.rps for x in split(Load(rps=100, duration=1), 4)] == [25.0] * 4
    with pytest.raises(ValueError, match="concurrency 1 cannot be spread over 2 workers"):
        split(Load(concurrency=1), 2)


def test_compare_gives_a_verdict_per_metric() -> None:
    a = report_with(p50=4.0, p99=10.0, rps=500.0, count=1000, errors=0)
    b = report_with(p50=3.0, p99=11.5, rps=520.0, count=1000, errors=2)
    rows = compare.compare(a, b, threshold=10, error_points=0.1)
    assert [(r.metric, r.change, r.verdict) for r in rows] == [
        ("p50 ms", "-25.0%", "better"),
        ("p99 ms", "+15.0%", "REGRESSION"),
        ("QPS", "+4.0%", "same"),
        ("errors %", "+0.20 pp", "REGRESSION"),
    ]
    assert not any(r.regressed for r in compare.compare(a, b, threshold=20, error_points=0.5))
    c = report_with(p50=4.0, p99=10.0, rps=400.0)
    assert compare.compare(a, c)[2].verdict == "REGRESSION"  # QPS down 20%


def test_the_summary_has_ghz_sections_and_warns_when_the_client_saturates() -> None:
    r = recording(list(range(1, 1001)), ["OK"] * 999 + ["UNAVAILABLE"])
    r.elapsed, r.cpu_seconds, r.loop_busy = 2.0, 1.9, 0.95
    outcome = Outcome(record.Recording(), r)
    text = summary.text(
        report.build(Target("127.0.0.1:1"), Load(), Scenario(), outcome, report.now())
    )
    for heading in ("Summary:", "Response time histogram", "Latency distribution", "Status code"):
        assert heading in text
    assert "  Count:\t1000" in text
    assert "  Requests/sec:\t500.00" in text
    assert "  50 % in 0.50 ms | 0.25 ms" in text
    assert "  [UNAVAILABLE]\t1 responses" in text
    assert "Error distribution:\n  [1]\tcode = UNAVAILABLE desc = store down" in text
    assert "Client: 1.900 ms CPU per call" in text
    assert "WARNING: the load generator's own CPU is saturated" in text
