"""The LogEvents handler: LogEventsRequest -> the intake -> LogEventsResponse."""

from __future__ import annotations

from datetime import UTC

import grpc
from google.protobuf.message import DecodeError

from server.errors import InvalidRequest
from server.events.intake import EventIntake, Incoming
from server.metrics import Metrics
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.transport.status import status_for


def parse(data: bytes) -> pb.LogEventsRequest | str:
    """The request, or why its bytes are none (answered INVALID_ARGUMENT, not UNKNOWN)."""
    try:
        return pb.LogEventsRequest.FromString(data)
    except DecodeError as error:
        return str(error)


def incoming(request: pb.LogEventsRequest) -> Incoming:
    events = request.events
    return Incoming(
        event_id=[e.event_id for e in events],
        user_id=[e.user_id for e in events],
        item_id=[e.item_id for e in events],
        event_type=[e.type for e in events],
        ts=[e.timestamp.ToDatetime(UTC) if e.HasField("timestamp") else None for e in events],
        query=[e.query or None for e in events],
    )


class EventsServicer:
    def __init__(self, intake: EventIntake, metrics: Metrics) -> None:
        self._intake = intake
        self._metrics = metrics

    async def LogEvents(
        self, received: pb.LogEventsRequest | str, context: grpc.aio.ServicerContext
    ) -> pb.LogEventsResponse:
        code = grpc.StatusCode.OK
        try:
            if isinstance(received, str):
                kind = "shoprank.v1.LogEventsRequest"
                raise InvalidRequest(f"the request is not a {kind}: {received}")
            outcome = await self._intake.log(incoming(received))
            for kind, count in (
                ("accepted", outcome.accepted),
                ("duplicate", outcome.duplicates),
                ("rejected", len(outcome.rejected)),
            ):
                self._metrics.events.inc(kind, count)
            return pb.LogEventsResponse(
                accepted=outcome.accepted,
                duplicates=outcome.duplicates,
                rejected=[
                    pb.RejectedEvent(index=i, event_id=event_id, reason=reason)
                    for i, event_id, reason in outcome.rejected
                ],
            )
        except Exception as error:
            code, message = status_for(error)
            await context.abort(code, message)
            raise AssertionError("context.abort returns only by raising") from error
        finally:
            self._metrics.event_calls.inc(code.name)
