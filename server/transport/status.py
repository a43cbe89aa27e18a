"""The one place errors become gRPC status codes (kserve's interceptor table).

Anything not in the table is a bug: INTERNAL with a fixed message, and the
traceback in the log, never in the caller's hands.
"""

from __future__ import annotations

import logging

import grpc

from features.errors import FeatureSchemaMismatch
from features.event_log import EventLogFull, EventLogUnavailable
from server.errors import (
    DeadlineExceeded,
    FeatureStoreUnavailable,
    InvalidRequest,
    Overloaded,
)
from server.ranking.catalogue import CatalogueUnavailable

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal error while ranking; it has been logged"

# Most specific first: the first class an error is an instance of decides.
STATUS: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (FeatureStoreUnavailable, grpc.StatusCode.UNAVAILABLE),
    (EventLogFull, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (EventLogUnavailable, grpc.StatusCode.UNAVAILABLE),
    (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (FeatureSchemaMismatch, grpc.StatusCode.FAILED_PRECONDITION),
    (CatalogueUnavailable, grpc.StatusCode.FAILED_PRECONDITION),
)


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status a caller sees; anything unexpected is INTERNAL with a fixed message."""
    for kind, code in STATUS:
        if isinstance(error, kind):
            return code, str(error)
    log.error("unexpected error while ranking", exc_info=error)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE
