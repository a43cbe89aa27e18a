"""What a server tells its operators: request ids, JSON call lines, and metrics."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest

from features.workspace import Workspace
from server.app import load
from server.config import Settings
from server.logs import REQUESTS, JsonFormatter
from server.processes import free_port
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc
from tests.support import ServerThread

ITEMS = [f"item_{i:06d}" for i in range(20)]


@dataclass
class Observed:
    channel: grpc.Channel
    metrics_url: str

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            return str(response.read().decode())


@pytest.fixture(scope="module")
def observed(workspace: Workspace) -> Iterator[Observed]:
    settings = Settings(
        home=workspace.home,
        port=0,
        log_format="json",
        metrics_port=free_port("127.0.0.1"),
        max_in_flight=1,
    )
    server = ServerThread(settings, load(settings))
    port = server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield Observed(channel, f"http://127.0.0.1:{settings.metrics_port}/metrics")
    server.stop()


def rank(channel: grpc.Channel, **fields: object) -> tuple[str, dict[str, str]]:
    """The call's status code and its trailing metadata."""
    metadata = fields.pop("metadata", None)
    request = pb.RankRequest(**{"user_id": "user_000001", "candidate_item_ids": ITEMS, **fields})
    call = pb_grpc.RankerStub(channel).Rank(request, timeout=30, metadata=metadata)
    try:
        list(call)
        code = "OK"
    except grpc.RpcError as error:
        code = error.code().name
    return code, dict(call.trailing_metadata() or ())


def call_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    records = [r for r in caplog.records if r.name == REQUESTS]
    return [json.loads(JsonFormatter().format(r)) for r in records]


def test_the_request_id_is_echoed_and_every_call_has_a_json_line(
    observed: Observed, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=REQUESTS):
        code, trailing = rank(observed.channel, metadata=(("x-request-id", "req-42"),))
        assert (code, trailing["x-request-id"]) == ("OK", "req-42")
        code, trailing = rank(observed.channel, user_id="")
        assert code == "INVALID_ARGUMENT"
        made = trailing["x-request-id"]
        assert len(made) == 32 and int(made, 16) >= 0  # made by the server when none is sent
        # A failed call's line is written once its status is sent: it may trail the client.
        deadline = time.monotonic() + 10
        while len(call_lines(caplog)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    lines = call_lines(caplog)
    assert [(line["request_id"], line["code"]) for line in lines] == [
        ("req-42", "OK"),
        (made, "INVALID_ARGUMENT"),
    ]
    assert lines[0]["user_id"] == "user_000001"
    assert lines[0]["candidates"] == 20
    assert lines[0]["ms"] > 0
    assert lines[0]["level"] == "INFO" and lines[0]["logger"] == REQUESTS


def test_cache_age_hits_and_feature_age_are_metrics(observed: Observed) -> None:
    before = observed.metrics()
    assert rank(observed.channel)[0] == "OK"
    after = observed.metrics()

    def value(text: str, name: str) -> float:
        line = next(x for x in text.splitlines() if x.startswith(name + " "))
        return float(line.split()[-1])

    hits = value(after, "shoprank_item_cache_hits_total") - value(
        before, "shoprank_item_cache_hits_total"
    )
    assert hits == 20  # every candidate from the cache
    assert value(after, "shoprank_item_cache_items") == 200
    assert value(after, "shoprank_item_cache_age_seconds") >= 0
    ages = value(after, "shoprank_user_feature_age_seconds_count") - value(
        before, "shoprank_user_feature_age_seconds_count"
    )
    assert ages == 1
    assert "shoprank_model_info{version=" in after


def test_shed_calls_are_counted(observed: Observed) -> None:
    before = observed.metrics()
    codes: Counter[str] = Counter()

    def caller() -> None:
        for _ in range(5):
            codes[rank(observed.channel, page_size=1)[0]] += 1  # 20 writes: a long call

    threads = [threading.Thread(target=caller) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    after = observed.metrics()

    def shed(text: str) -> float:
        return float(
            next(x for x in text.splitlines() if x.startswith("shoprank_rank_shed_total")).split()[
                -1
            ]
        )

    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}
    assert shed(after) - shed(before) == codes["RESOURCE_EXHAUSTED"]
    assert codes["OK"] > 0
