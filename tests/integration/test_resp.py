"""server.resp: the RESP parser on exact bytes, the client against a real redis-server."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import uvloop

from server.sources.resp import INCOMPLETE, RespClient, RespError, encode, parse
from server.sources.user_reads import async_redis_client
from tests.services import missing_redis_binaries, redis_server

# The server runs its calls on uvloop (server.app.run); tests run on both loops.
RUNNERS = pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
STREAM = b"*3\r\n$3\r\nabc\r\n$-1\r\n$0\r\n\r\n+OK\r\n-ERR wrong\r\n:42\r\n*-1\r\n"


def test_a_command_is_an_array_of_bulk_strings() -> None:
    assert encode(b"HMGET", b"k\r\n", b"") == b"*3\r\n$5\r\nHMGET\r\n$3\r\nk\r\n\r\n$0\r\n\r\n"


def test_replies_are_parsed_one_after_another() -> None:
    replies, at = [], 0
    while at < len(STREAM):
        reply, at = parse(STREAM, at)
        replies.append(reply)
    assert replies[0] == [b"abc", None, b""]
    assert replies[1] == "OK"
    assert isinstance(replies[2], RespError) and str(replies[2]) == "ERR wrong"
    assert replies[3:] == [42, None]


def test_every_cut_of_a_reply_is_incomplete_until_its_last_byte() -> None:
    first = STREAM.index(b"+OK")
    for cut in range(first):
        assert parse(STREAM[:cut]) == (None, INCOMPLETE)
    assert parse(STREAM[:first]) == ([b"abc", None, b""], first)


def test_a_byte_that_starts_no_reply_is_refused() -> None:
    with pytest.raises(RespError, match="not a RESP reply"):
        parse(b"?what\r\n")


@pytest.fixture(scope="module")
def redis_address() -> Iterator[tuple[str, int]]:
    missing = missing_redis_binaries()
    if missing:
        pytest.skip(f"{' and '.join(missing)} not on PATH")
    with tempfile.TemporaryDirectory() as directory, redis_server(Path(directory)) as url:
        host, port = url.rsplit(":", 1)
        yield host, int(port)


@RUNNERS
def test_hmget_equals_redis_py_on_a_real_server(
    redis_address: tuple[str, int], run: Callable[[Any], Any]
) -> None:
    host, port = redis_address
    plain = redis.Redis(host=host, port=port, db=2)
    plain.hset(b"user", mapping={b"a": b"\x00\r\n1", b"b": b""})
    fields = [b"a", b"missing", b"b", "_ts:view"]

    async def read() -> list[list[bytes | None]]:
        client = RespClient(host, port, db=2)
        # Concurrent calls pipeline on the one connection; each gets its own reply.
        return await asyncio.gather(
            client.hmget(b"user", fields),
            client.hmget(b"nobody", fields),
            client.hmget(b"user", [b"b"]),
        )

    try:
        user, nobody, only_b = run(read())
        assert user == plain.hmget(b"user", fields) == [b"\x00\r\n1", None, b"", None]
        assert nobody == [None] * 4
        assert only_b == [b""]
    finally:
        plain.delete(b"user")


def test_an_error_reply_fails_that_call_only(redis_address: tuple[str, int]) -> None:
    host, port = redis_address
    plain = redis.Redis(host=host, port=port, db=3)
    plain.set(b"text", b"not a hash")

    async def read() -> list[object]:
        client = RespClient(host, port, db=3)
        return await asyncio.gather(
            client.hmget(b"text", [b"a"]), client.hmget(b"absent", [b"a"]), return_exceptions=True
        )

    try:
        wrong, fine = asyncio.run(read())
        assert isinstance(wrong, RespError) and str(wrong).startswith("WRONGTYPE")
        assert fine == [None]
    finally:
        plain.delete(b"text")


@RUNNERS
def test_a_silent_server_fails_the_call_after_the_timeout_and_the_next_call_reconnects(
    run: Callable[[Any], Any],
) -> None:
    async def scenario() -> tuple[str, int]:
        answering = False
        accepted = 0

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            while data := await reader.read(1024):
                if answering:
                    writer.write(b"*1\r\n$2\r\nok\r\n" * data.count(b"HMGET"))
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = RespClient("127.0.0.1", port, timeout=0.2)
        async with server:
            with pytest.raises(RespError, match=r"did not answer within 0.2s"):
                await client.hmget(b"k", [b"f"])
            answering = True
            assert await client.hmget(b"k", [b"f"]) == [b"ok"]
        return "reconnected", accepted

    assert run(scenario()) == ("reconnected", 2)


def test_no_server_is_a_clear_error() -> None:
    from server.processes import free_port

    port = free_port("127.0.0.1")
    with pytest.raises(RespError, match=f"cannot connect to redis at 127.0.0.1:{port}"):
        asyncio.run(RespClient("127.0.0.1", port, connect_timeout=0.5).hmget(b"k", [b"f"]))


def test_the_lean_client_serves_plain_redis_and_redis_py_the_rest() -> None:
    assert isinstance(async_redis_client("redis", "127.0.0.1:6390,db=3,password=x"), RespClient)
    assert isinstance(async_redis_client("redis", "127.0.0.1:6390,ssl=false"), RespClient)
    assert not isinstance(async_redis_client("redis", "127.0.0.1:6390,ssl=true"), RespClient)
    cluster = async_redis_client("redis_cluster", "127.0.0.1:7000,127.0.0.1:7001")
    assert not isinstance(cluster, RespClient)
