"""The request id of a call, and its line in the JSON log."""

from __future__ import annotations

import uuid

import grpc

from server import logs
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.ranking.pipeline import Pipeline
from server.transport.requests import Malformed

REQUEST_ID = "x-request-id"
MAX_ID = 128  # a caller's id longer than this is cut, so a log line stays a line


def request_id(context: grpc.aio.ServicerContext, make: bool) -> str:
    """The caller's x-request-id; else a new one when `make`, else ""."""
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID:
            text = value.decode(errors="replace") if isinstance(value, bytes) else value
            return text[:MAX_ID]
    return uuid.uuid4().hex if make else ""


def log_call(
    call_id: str,
    received: pb.RankRequest | Malformed,
    code: grpc.StatusCode,
    seconds: float,
    pipeline: Pipeline,
) -> None:
    fields: dict[str, object] = {
        "request_id": call_id,
        "method": "Rank",
        "code": code.name,
        "ms": round(seconds * 1e3, 3),
        "model_version": pipeline.version,
    }
    if isinstance(received, pb.RankRequest):
        fields.update(
            user_id=received.user_id[:MAX_ID],
            candidates=len(received.candidate_item_ids),
            top_k=received.top_k,
        )
    logs.request_line(fields)
