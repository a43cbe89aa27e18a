"""The transport-only baseline: a Ranker that streams fixed, pre-serialised
response bytes and computes nothing, so a benchmark can tell gRPC's own cost
from shoprank's.

    python bench/transport_server.py --port P --pages pages.bin [--one-batch] [--uvloop]

By default an async generator streams the pages, the idiomatic server stream,
on asyncio's own loop. --one-batch sends them as shoprank does, the last page
in one batch with the status; --uvloop runs on uvloop, as shoprank does. With
both, the server is shoprank's transport with the ranking taken out.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


def read_pages(path: Path) -> list[bytes]:
    """Length-prefixed (uint32 big-endian) serialised RankResponse messages."""
    data = path.read_bytes()
    pages, offset = [], 0
    while offset < len(data):
        (size,) = struct.unpack_from(">I", data, offset)
        pages.append(data[offset + 4 : offset + 4 + size])
        offset += 4 + size
    return pages


def write_pages(path: Path, pages: list[bytes]) -> None:
    path.write_bytes(b"".join(struct.pack(">I", len(p)) + p for p in pages))


async def serve(port: int, pages: list[bytes], ready: Path | None, one_batch: bool) -> None:
    async def rank(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        for page in pages:
            yield page

    async def rank_one_batch(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        # As shoprank serves Rank (server.servicer.add_to_server): the last page
        # goes out in one batch with the status. The same frames on the wire.
        for page in pages[:-1]:
            await context.write(page)
        return pages[-1]

    method = (
        grpc.unary_unary_rpc_method_handler(
            rank_one_batch, request_deserializer=None, response_serializer=None
        )
        if one_batch
        else grpc.unary_stream_rpc_method_handler(
            rank, request_deserializer=None, response_serializer=None
        )
    )
    handler = grpc.method_handlers_generic_handler("shoprank.v1.Ranker", {"Rank": method})
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    health_servicer = health.aio.HealthServicer()  # so the benchmark can wait for it
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    if ready is not None:
        ready.write_text(str(bound))
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--pages", type=Path, required=True)
    parser.add_argument("--ready", type=Path, help="write the bound port here when serving")
    parser.add_argument(
        "--one-batch", action="store_true", help="send the last page with the status"
    )
    parser.add_argument("--uvloop", action="store_true", help="serve on uvloop")
    args = parser.parse_args()
    serving = serve(args.port, read_pages(args.pages), args.ready, args.one_batch)
    if args.uvloop:
        import uvloop

        uvloop.run(serving)
    else:
        asyncio.run(serving)


if __name__ == "__main__":
    main()
