"""The Ranker service's method handlers, registered on a grpc.aio server."""

from __future__ import annotations

import grpc

from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.transport.info import InfoServicer
from server.transport.log_events import EventsServicer
from server.transport.log_events import parse as parse_events
from server.transport.requests import parse
from server.transport.servicer import RankerServicer

SERVICE = pb.DESCRIPTOR.services_by_name["Ranker"].full_name


def add_to_server(
    servicer: RankerServicer,
    info: InfoServicer,
    events: EventsServicer,
    server: grpc.aio.Server,
) -> None:
    """As the generated add_RankerServicer_to_server, with two differences.

    Pages are serialised already (server.transport.pages.to_pages): they pass through as bytes.
    Rank is a server stream in the contract, and on the wire, where a stream of
    pages is the same frames whatever the handler's kind: HEADERS, a DATA message
    per page, trailers. The handler is served as unary-unary, which writes every
    page but the last with context.write and returns the last: gRPC then sends the
    last page and the status in one batch. A ranking of one page, the common case,
    costs one write and one completion instead of two (a stream handler sends its
    status in a batch of its own after the last page), and its client gets the
    whole response in one read. grpc.aio's context.write serves any handler kind;
    tests/e2e/test_server.py holds a four-page ranking to the stream's contract.
    """
    handlers = {
        "Rank": grpc.unary_unary_rpc_method_handler(
            servicer.Rank,
            request_deserializer=parse,  # malformed bytes reach Rank, for INVALID_ARGUMENT
            response_serializer=None,  # bytes as they are
        ),
        "GetServingInfo": grpc.unary_unary_rpc_method_handler(
            info.GetServingInfo,
            request_deserializer=lambda _: pb.GetServingInfoRequest(),  # it has no fields
            response_serializer=pb.ServingInfo.SerializeToString,
        ),
        "LogEvents": grpc.unary_unary_rpc_method_handler(
            events.LogEvents,
            request_deserializer=parse_events,
            response_serializer=pb.LogEventsResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
