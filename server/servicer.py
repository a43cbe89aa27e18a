"""The Ranker servicer: a thin adapter between gRPC and the ranking pipeline."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor

import grpc

from server.config import Settings
from server.convert import to_pages, to_query
from server.errors import DeadlineExceeded, Overloaded, status_for
from server.metrics import Metrics
from server.pipeline import RankingPipeline
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc

SERVICE = pb.DESCRIPTOR.services_by_name["Ranker"].full_name


def _check_deadline(context: grpc.aio.ServicerContext, stage: str) -> None:
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise DeadlineExceeded(
            f"the call's deadline passed {stage}; allow more time or fewer candidates"
        )


class RankerServicer(pb_grpc.RankerServicer):
    def __init__(
        self, pipeline: RankingPipeline, settings: Settings, executor: Executor, metrics: Metrics
    ) -> None:
        self._pipeline = pipeline
        self._settings = settings
        self._executor = executor
        self._metrics = metrics
        self._in_flight = 0
        metrics.in_flight.read_from(lambda: self._in_flight)

    async def Rank(  # returns the last serialised page: see add_to_server
        self, request: pb.RankRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        self._in_flight += 1
        try:
            if self._in_flight > self._settings.max_in_flight:
                raise Overloaded(
                    f"server is at its limit of {self._settings.max_in_flight} concurrent "
                    "rankings; retry with backoff"
                )
            query = to_query(request, self._settings)
            self._metrics.candidates.observe(len(request.candidate_item_ids))
            _check_deadline(context, "before ranking started")
            user = await self._pipeline.read_user(query.user_id)
            if len(query.candidates) <= self._settings.inline_max_candidates:
                ranking = self._pipeline.rank(query, user)
            else:
                loop = asyncio.get_running_loop()
                ranking = await loop.run_in_executor(
                    self._executor, self._pipeline.rank, query, user
                )
            _check_deadline(context, "while ranking")
            serialise_started = time.perf_counter()
            page_size = request.page_size or self._settings.default_page_size
            pages = to_pages(ranking, page_size)
            last = next(pages)
            for page in pages:  # every page but the last is written as it is made
                await context.write(last)
                last = page
            ranking.timings["serialise"] = time.perf_counter() - serialise_started
            ranking.timings["total"] = time.perf_counter() - started
            self._metrics.observe_stages(ranking.timings)
            return last
        except Exception as error:
            code, message = status_for(error)
            await context.abort(code, message)
            raise AssertionError("context.abort returns only by raising") from error
        finally:
            self._in_flight -= 1
            self._metrics.count(code.name)


def add_to_server(servicer: RankerServicer, server: grpc.aio.Server) -> None:
    """As the generated add_RankerServicer_to_server, with two differences.

    Pages are serialised already (server.convert.to_pages): they pass through as bytes.
    Rank is a server stream in the contract, and on the wire, where a stream of
    pages is the same frames whatever the handler's kind: HEADERS, a DATA message
    per page, trailers. The handler is served as unary-unary, which writes every
    page but the last with context.write and returns the last: gRPC then sends the
    last page and the status in one batch. A ranking of one page, the common case,
    costs one write and one completion instead of two (a stream handler sends its
    status in a batch of its own after the last page), and its client gets the
    whole response in one read. grpc.aio's context.write serves any handler kind;
    tests/test_server.py holds a four-page ranking to the stream's contract.
    """
    handlers = {
        "Rank": grpc.unary_unary_rpc_method_handler(
            servicer.Rank,
            request_deserializer=pb.RankRequest.FromString,
            response_serializer=None,  # bytes as they are
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
