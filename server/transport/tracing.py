"""OpenTelemetry: a span per Rank call, with a child span per stage.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (the standard variable; the
exporter reads the rest of OTEL_* itself). The spans are made once a call has
ended (the servicer schedules them for the loop's next turn), from the timings
the pipeline takes anyway, so a traced call waits for none of it; an untraced
server does no tracing work at all. The
caller's trace context (W3C `traceparent` metadata) becomes the parent.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import grpc

from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.ranking.pipeline import Pipeline
from server.transport.requests import Malformed

# Timing keys that are not ranking stages, and where they sit in the call.
BEFORE = "user_read"
AFTER = "serialise"
TOTAL = "total"


def tracer_for(endpoint: str, service_name: str) -> Any:
    """An OTLP-exporting tracer, or None when no endpoint is configured."""
    if not endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider.get_tracer("shoprank")


def record_call(
    tracer: Any,
    context: grpc.aio.ServicerContext,
    started_ns: int,
    timings: Mapping[str, float],
    code: grpc.StatusCode,
    received: pb.RankRequest | Malformed,
    pipeline: Pipeline,
) -> None:
    """The call's span and its stages' spans, laid end to end from started_ns."""
    from opentelemetry import propagate, trace

    ended_ns = time.time_ns()
    attributes: dict[str, Any] = {"shoprank.model_version": pipeline.version}
    if isinstance(received, pb.RankRequest):
        attributes["shoprank.candidates"] = len(received.candidate_item_ids)
    carrier = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
    parent = propagate.extract(carrier)
    root = tracer.start_span(
        "shoprank.v1.Ranker/Rank",
        context=parent,
        kind=trace.SpanKind.SERVER,
        start_time=started_ns,
        attributes={"rpc.system": "grpc", "rpc.grpc.status_code": code.value[0], **attributes},
    )
    if code != grpc.StatusCode.OK:
        root.set_status(trace.Status(trace.StatusCode.ERROR, code.name))
    inside = trace.set_span_in_context(root)
    stages = [n for n in timings if n not in (BEFORE, AFTER, TOTAL)]
    order = [n for n in (BEFORE, *stages, AFTER) if n in timings]  # as the call ran them
    at = started_ns
    for name in order:
        end = at + int(timings[name] * 1e9)
        tracer.start_span(name, context=inside, start_time=at).end(end_time=end)
        at = end
    root.end(end_time=ended_ns)
