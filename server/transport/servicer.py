"""The Ranker servicer: a thin adapter between gRPC and the ranking pipeline."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc

from server.config import Settings
from server.errors import CallEnded
from server.metrics import Metrics
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.ranking.pipeline import Pipeline
from server.sources.user_fallback import UserFallback
from server.transport.admission import Admission, cancelled_code, check_deadline
from server.transport.call_log import REQUEST_ID, log_call, request_id
from server.transport.pages import write_pages
from server.transport.requests import Malformed, to_query, well_formed
from server.transport.status import status_for
from server.transport.tracing import record_call


class RankerServicer:
    def __init__(
        self,
        pipeline: Pipeline,
        users: UserFallback,
        admission: Admission,
        settings: Settings,
        metrics: Metrics,
        tracer: Any = None,  # an OpenTelemetry tracer; None = no tracing
    ) -> None:
        self.pipeline = pipeline
        self._tracer = tracer
        self._users = users
        self._admission = admission
        self._settings = settings
        self._metrics = metrics
        metrics.in_flight.read_from(lambda: admission.in_flight)
        metrics.shed.read_from(lambda: admission.shed)
        self._log_calls = settings.log_format == "json"

    async def Rank(  # returns the last serialised page: see server.transport.handlers
        self, received: pb.RankRequest | Malformed, context: grpc.aio.ServicerContext
    ) -> bytes:
        started = time.perf_counter()
        started_ns = time.time_ns() if self._tracer is not None else 0
        timings: dict[str, float] = {}
        code = grpc.StatusCode.OK
        call_id = request_id(context, make=self._log_calls)
        if call_id:
            context.set_trailing_metadata(((REQUEST_ID, call_id),))
        try:
            with self._admission.slot():
                request = well_formed(received)
                query = to_query(request, self._settings)
                self._metrics.candidates.observe(len(request.candidate_item_ids))
                check_deadline(context, "before ranking started")
                # I/O, before the stages; bounded, and served without the store when it fails.
                user, served = await self._users.user(query.user_id)
                read = time.perf_counter()
                if user.known:
                    self._metrics.user_age.observe(time.time() - user.timestamp)
                pipeline = self.pipeline
                ranking = await self._admission.run(
                    len(query.candidates), pipeline.run, query, user, served
                )
                check_deadline(context, "while ranking")
                ranked = time.perf_counter()
                page_size = request.page_size or self._settings.default_page_size
                last = await write_pages(context, ranking, page_size)
                # Writes into a call past its deadline can pass silently: it failed all the same.
                check_deadline(context, "while the pages were written")
                ranking.timings.update(
                    user_read=read - started,
                    serialise=time.perf_counter() - ranked,
                    total=time.perf_counter() - started,
                )
                self._metrics.observe_stages(ranking.timings)
                timings = ranking.timings
                return last
        except (asyncio.CancelledError, CallEnded) as ended:
            # The call is over (its deadline passed, or the peer left): nothing to send.
            code = cancelled_code(context)
            raise asyncio.CancelledError from ended
        except Exception as error:
            code, message = status_for(error)
            await context.abort(code, message)
            raise AssertionError("context.abort returns only by raising") from error
        finally:
            self._metrics.count(code.name)
            if self._log_calls:
                log_call(call_id, received, code, time.perf_counter() - started, self.pipeline)
            if self._tracer is not None:
                # On the loop's next turn, once the response is on its way: a call waits for none
                # of the tracing work (server/transport/tracing.py).
                call = (context, started_ns, timings, code, received, self.pipeline)
                asyncio.get_running_loop().call_soon(record_call, self._tracer, *call)
