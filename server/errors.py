"""The server's domain errors: small named exceptions, with no transport in them.

server/transport/status.py maps them, and the features' own errors, to gRPC
status codes in one table.
"""

from __future__ import annotations


class RankingError(Exception):
    """A request that cannot be ranked, for a reason the caller can act on."""


class InvalidRequest(RankingError):
    """The request is malformed or over a limit; the message names the field."""


class Overloaded(RankingError):
    """The server sheds this call; the caller should retry with backoff."""


class CallEnded(Exception):
    """The call ended, by its deadline or its caller, while pages were still
    being written: there is no one left to send a status to."""


class FeatureStoreUnavailable(RankingError):
    """The online store did not answer, and nothing else can serve the call."""

    @classmethod
    def after(cls, error: Exception, store: str = "") -> FeatureStoreUnavailable:
        """The error for a failed online read; store names it where the reader knows it."""
        where = f"{store}: " if store else ""
        return cls(
            f"feature store read failed ({where}{type(error).__name__}: {error}); "
            "check the online store is reachable"
        )


class RegistryUnavailable(Exception):
    """The Feast registry could not be read (unreachable, or mid-write by an apply).
    A running server keeps what it serves and tries again at its next poll."""


class DeadlineExceeded(RankingError):
    """The caller's deadline passed before the ranking was sent."""


class StartupError(Exception):
    """The server cannot start; the message says what to fix."""
