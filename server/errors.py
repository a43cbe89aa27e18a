"""Domain errors, and the one place they become gRPC status codes."""

from __future__ import annotations

import logging

import grpc

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal error while ranking; it has been logged"


class RankingError(Exception):
    """A request that cannot be ranked, for a reason the caller can act on."""

    code = grpc.StatusCode.INTERNAL


class InvalidRequest(RankingError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class Overloaded(RankingError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FeatureStoreUnavailable(RankingError):
    code = grpc.StatusCode.UNAVAILABLE

    @classmethod
    def after(cls, error: Exception, store: str = "") -> FeatureStoreUnavailable:
        """The error for a failed online read; store names it where the reader knows it."""
        where = f"{store}: " if store else ""
        return cls(
            f"feature store read failed ({where}{type(error).__name__}: {error}); "
            "check the online store is reachable"
        )


class DeadlineExceeded(RankingError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class FeatureSchemaMismatch(RankingError):
    """Served features do not fit the loaded model (e.g. another vector width)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class StartupError(Exception):
    """The server cannot start; the message says what to fix."""


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status a caller sees; anything unexpected is INTERNAL with a fixed message."""
    if isinstance(error, RankingError):
        return error.code, str(error)
    log.error("unexpected error while ranking", exc_info=error)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE
