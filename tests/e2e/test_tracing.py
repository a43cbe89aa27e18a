"""OpenTelemetry spans of real Rank calls, caught by the SDK's in-memory exporter."""

from __future__ import annotations

import contextlib
import itertools

import grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from features.workspace import Workspace
from server.app import load
from server.config import Settings, from_env
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc
from tests.support import ServerThread

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def test_a_rank_call_is_a_span_with_a_child_per_stage_under_the_callers_trace(
    workspace: Workspace,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = Settings(home=workspace.home, port=0)
    loaded = load(settings)
    server = ServerThread(settings, loaded, provider.get_tracer("test"))
    port = server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.RankerStub(channel)
            request = pb.RankRequest(
                user_id="user_000001", candidate_item_ids=[f"item_{i:06d}" for i in range(10)]
            )
            traceparent = (("traceparent", f"00-{TRACE_ID}-{PARENT}-01"),)
            list(stub.Rank(request, timeout=30, metadata=traceparent))
            with contextlib.suppress(grpc.RpcError):
                list(stub.Rank(pb.RankRequest(user_id=""), timeout=30))
    finally:
        server.stop()
    spans = exporter.get_finished_spans()
    roots = [s for s in spans if s.name == "shoprank.v1.Ranker/Rank"]
    assert len(roots) == 2
    ok, failed = roots
    assert f"{ok.context.trace_id:032x}" == TRACE_ID  # the caller's trace
    assert f"{ok.parent.span_id:016x}" == PARENT
    children = sorted(
        (s for s in spans if s.parent is not None and s.parent.span_id == ok.context.span_id),
        key=lambda s: s.start_time,
    )
    stages = loaded.pipeline.stage_names
    assert [c.name for c in children] == ["user_read", *stages, "serialise"]
    for before, after in itertools.pairwise(children):
        assert before.end_time == after.start_time  # laid end to end, as they ran
    assert ok.start_time <= children[0].start_time and children[-1].end_time <= ok.end_time
    assert ok.attributes["rpc.grpc.status_code"] == 0
    assert ok.attributes["shoprank.candidates"] == 10
    assert failed.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert failed.status.status_code.name == "ERROR"


def test_tracing_is_on_only_when_the_standard_endpoint_variable_is_set() -> None:
    assert from_env({}).otlp_endpoint == ""
    got = from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert got.otlp_endpoint == "http://127.0.0.1:4318"
