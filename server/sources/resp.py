"""A lean asyncio Redis client for the one command a ranking sends: HMGET.

redis-py's asyncio client spent 150-190 us of CPU on each HMGET here (its
connection pool, lock and response callbacks), more than the rest of a
ranking's user read. This one speaks RESP2 over one connection per event loop:
commands are written as they come and Redis answers them in order, so the
rankings in flight pipeline on one socket and each reply resolves the oldest
waiting call. A call that waits longer than the timeout drops the connection,
and every call waiting on it fails: a hung Redis fails calls, never hangs them.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from typing import cast

Reply = bytes | str | int | list["Reply"] | None

INCOMPLETE = -1


class RespError(Exception):
    """Redis answered with an error, or the connection failed or timed out."""


def encode(*parts: bytes) -> bytes:
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def parse(buffer: bytes | bytearray, at: int = 0) -> tuple[Reply | RespError, int]:
    """The reply that starts at `at`, and where it ends; (None, INCOMPLETE) while the
    buffer holds only part of it. An error reply is returned as a RespError."""
    line_end = buffer.find(b"\r\n", at)
    if line_end < 0:
        return None, INCOMPLETE
    kind, head, after = buffer[at], bytes(buffer[at + 1 : line_end]), line_end + 2
    if kind == 0x2B:  # + simple string
        return head.decode(), after
    if kind == 0x2D:  # - error
        return RespError(head.decode(errors="replace")), after
    if kind == 0x3A:  # : integer
        return int(head), after
    if kind == 0x24:  # $ bulk string; $-1 is nil
        size = int(head)
        if size < 0:
            return None, after
        end = after + size
        if len(buffer) < end + 2:
            return None, INCOMPLETE
        return bytes(buffer[after:end]), end + 2
    if kind == 0x2A:  # * array; *-1 is nil
        count = int(head)
        if count < 0:
            return None, after
        items: list[Reply] = []
        for _ in range(count):
            item, after = parse(buffer, after)
            if after == INCOMPLETE:
                return None, INCOMPLETE
            if isinstance(item, RespError):
                return item, after  # not sent by HMGET; keep the error, not the array
            items.append(item)
        return items, after
    raise RespError(f"not a RESP reply: type byte {kind!r}")


class _Connection(asyncio.Protocol):
    """One socket; replies resolve the waiting futures first in, first out."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._buffer = bytearray()
        self._waiting: deque[tuple[asyncio.Future[Reply], float]] = deque()
        self._transport: asyncio.Transport | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._failure: RespError | None = None

    @property
    def open(self) -> bool:
        return self._transport is not None and self._failure is None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though uvloop's do not subclass asyncio.Transport.
        self._transport = cast(asyncio.Transport, transport)

    def send(self, command: bytes) -> asyncio.Future[Reply]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        if not self.open or self._transport is None:
            future.set_exception(self._failure or RespError("not connected"))
            return future
        self._waiting.append((future, time.monotonic()))
        self._transport.write(command)
        if self._watchdog is None:
            self._watchdog = loop.call_later(self._timeout, self._check)
        return future

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        at = 0
        try:
            while self._waiting:
                reply, end = parse(self._buffer, at)
                if end == INCOMPLETE:
                    break
                at = end
                future, _ = self._waiting.popleft()
                if future.done():  # its caller was cancelled
                    continue
                if isinstance(reply, RespError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except (RespError, ValueError) as error:  # a stream we cannot read: drop it
            self.close(RespError(f"unreadable reply from redis: {error}"))
            return
        del self._buffer[:at]

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(RespError(f"connection to redis lost: {exc or 'closed by the server'}"))

    def _check(self) -> None:
        """Fail everything waiting once the oldest call has waited `timeout`."""
        self._watchdog = None
        if not self._waiting:
            return
        waited = time.monotonic() - self._waiting[0][1]
        if waited >= self._timeout:
            self.close(RespError(f"redis did not answer within {self._timeout:g}s"))
            return
        loop = asyncio.get_running_loop()
        self._watchdog = loop.call_later(self._timeout - waited, self._check)

    def close(self, error: RespError) -> None:
        """Fail every waiting call with `error` (the first failure sticks); drop the socket."""
        if self._failure is None:
            self._failure = error
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self._waiting:
            future, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if self._transport is not None:
            self._transport.abort()


class RespClient:
    """HMGET over one pipelined connection, opened on first use and again after a failure.

    Belongs to the event loop it is first used on, as an asyncio client does.
    """

    def __init__(
        self,
        host: str,
        port: int,
        db: int = 0,
        password: str | None = None,
        username: str | None = None,
        timeout: float = 1.0,
        connect_timeout: float = 1.0,
    ) -> None:
        self._address = (host, port)
        self._setup = []
        if password is not None:
            who = [username.encode()] if username else []
            self._setup.append(encode(b"AUTH", *who, password.encode()))
        if db:
            self._setup.append(encode(b"SELECT", str(db).encode()))
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._connection: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None

    async def hmget(self, key: bytes, fields: Sequence[bytes | str]) -> list[bytes | None]:
        parts = [b"HMGET", key, *(f if isinstance(f, bytes) else f.encode() for f in fields)]
        reply = await (await self._open()).send(encode(*parts))
        if not isinstance(reply, list):
            raise RespError(f"HMGET answered {reply!r}, not an array")
        return [value if isinstance(value, bytes) else None for value in reply]

    async def _open(self) -> _Connection:
        if self._connection is not None and self._connection.open:
            return self._connection
        if self._connecting is None:  # one connect for all the calls that arrive meanwhile
            self._connecting = asyncio.ensure_future(self._connect())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done():
                self._connecting = None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        host, port = self._address
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self._timeout), host, port),
                self._connect_timeout,
            )
        except (OSError, TimeoutError) as error:
            raise RespError(f"cannot connect to redis at {host}:{port}: {error!r}") from None
        try:
            for command in self._setup:  # AUTH, SELECT: before any call's command
                reply = await connection.send(command)
                if reply != "OK":
                    raise RespError(f"redis answered {reply!r} to the connection's set-up")
        except RespError as error:
            refused = RespError(f"redis refused the connection's set-up: {error}")
            connection.close(refused)
            raise refused from None
        self._connection = connection
        return connection
