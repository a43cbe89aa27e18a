"""Bearer tokens, checked in one interceptor: a call without a listed token
gets UNAUTHENTICATED before any handler runs. Health stays open, so a load
balancer or an orchestrator can probe without a token."""

from __future__ import annotations

import contextlib
import hmac
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from server.errors import StartupError

# Health checks need no token: the balancers and kubelets that probe have none.
OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})
# The token file is looked at (one stat) at most this often; a rotation lands within it.
RECHECK_SECONDS = 1.0
UNAUTHENTICATED = "a valid `authorization: Bearer <token>` is required"


class TokenFile:
    """The tokens of a file, one per line (blank lines and # comments skipped),
    re-read when the file changes. A file that turns unreadable or empty keeps
    the last good tokens: a bad rotation must not lock every caller out."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._tokens: tuple[bytes, ...] = ()
        self._checked = 0.0

    def load(self) -> None:
        """The first read, at startup: a missing or empty file stops the server."""
        try:
            self._read()
        except OSError as error:
            raise StartupError(f"auth_tokens: cannot read {self._path}: {error.strerror}") from None
        if not self._tokens:
            raise StartupError(f"auth_tokens: {self._path} lists no tokens")

    def _read(self) -> None:
        stat = self._path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        lines = self._path.read_text().splitlines()
        tokens = tuple(
            line.strip().encode() for line in lines if line.strip() and not line.startswith("#")
        )
        if tokens:
            self._tokens = tokens
            self._stamp = stamp

    def tokens(self, now: float) -> tuple[bytes, ...]:
        if now - self._checked >= RECHECK_SECONDS:
            self._checked = now
            with contextlib.suppress(OSError):  # keep the last good tokens; try again later
                self._read()
        return self._tokens

    def allows(self, presented: bytes, now: float) -> bool:
        """Constant time in the token: every listed token is compared in full."""
        allowed = False
        for token in self.tokens(now):
            allowed |= hmac.compare_digest(presented, token)
        return allowed


def bearer(metadata: tuple[tuple[str, str | bytes], ...] | None) -> bytes | None:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            return token.strip().encode() if scheme.lower() == "bearer" else None
    return None


class BearerAuth(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc has no stubs
    def __init__(self, tokens: TokenFile, on_denied: Callable[[str], None]) -> None:
        self._tokens = tokens
        self._on_denied = on_denied

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method in OPEN_METHODS:
            return handler
        presented = bearer(details.invocation_metadata)
        if presented is not None and self._tokens.allows(presented, time.monotonic()):
            return handler
        self._on_denied(details.method)
        return _denying(handler)


def _denying(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """The same kind of handler, refusing: gRPC reads requests by the kind."""

    async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED)

    kind = (
        "unary_unary"
        if handler.unary_unary
        else "unary_stream"
        if handler.unary_stream
        else "stream_unary"
        if handler.stream_unary
        else "stream_stream"
    )
    return handler._replace(**{kind: deny})
