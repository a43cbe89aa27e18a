"""Feast's online store layout, spelled once: what its SQLite and Redis stores write
and read, so the server's one-read path and the fast materializer agree with Feast.

- an entity key is Feast's serialisation (version 3) of a one-string-key entity;
- a value is a serialised ValueProto: a float32 as `float_val`, a float32 list as
  `float_list_val`, a null (or a NaN float, as Feast's conversion has it) as an
  empty Value;
- SQLite keeps a table "<project>_<view>" of (entity_key, feature_name, value,
  value_text, event_ts, created_ts) rows, event_ts in Feast's epoch adaptation;
- Redis keeps one hash per entity, key = entity key + project, with a field
  murmur3("view:feature") per feature and "_ts:<view>" for the row's time.

Tests hold both writers and the server's reads equal to Feast's own, value for
value, on SQLite, Redis and Redis Cluster: a Feast upgrade that changes the
layout fails them rather than serving zeros.
"""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# A hung Redis must fail a call fast (UNAVAILABLE), not hang it; a connection
# string can say otherwise.
REDIS_TIMEOUT_SECONDS = 1.0


class EntityKeys:
    """Feast's serialised entity key of a one-string-key entity, without Feast's per-call
    proto building: the bytes before the value are fixed, so they are computed once."""

    def __init__(self, join_key: str, version: int) -> None:
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        def feast(value: str) -> bytes:
            key = EntityKey(join_keys=[join_key], entity_values=[Value(string_val=value)])
            encoded: bytes = serialize_entity_key(key, entity_key_serialization_version=version)
            return encoded

        empty = feast("")
        self._prefix = empty[:-4]  # the value's uint32 length, zero here, ends the key
        self._feast = feast
        if empty[-4:] != b"\0\0\0\0" or self.key("probe-1") != feast("probe-1"):
            self._prefix = b""  # another encoding: take Feast's function every time

    def key(self, value: str) -> bytes:
        if not self._prefix:
            return self._feast(value)
        raw = value.encode()
        return self._prefix + struct.pack("<I", len(raw)) + raw

    def key_array(self, values: pa.Array) -> pa.LargeBinaryArray:
        """key() of each value of a string column, built as one buffer: the prefix,
        the value's uint32 length and its UTF-8 bytes."""
        if not self._prefix:
            return pa.array([self._feast(v) for v in values.to_pylist()], pa.large_binary())
        values = values.cast(pa.large_string())
        size = len(values)
        start = np.frombuffer(values.buffers()[1], dtype=np.int64)[values.offset :][: size + 1]
        text = np.frombuffer(values.buffers()[2], dtype=np.uint8)
        lengths = np.diff(start)
        head = len(self._prefix) + 4
        offsets = np.concatenate([[0], np.cumsum(lengths + head)])
        data = np.empty(int(offsets[-1]), dtype=np.uint8)
        at = offsets[:-1]
        data[at[:, None] + np.arange(len(self._prefix))] = np.frombuffer(self._prefix, np.uint8)
        sizes = lengths.astype("<u4").view(np.uint8).reshape(size, 4)
        data[at[:, None] + len(self._prefix) + np.arange(4)] = sizes
        # The UTF-8 bytes in one gather: each byte's row, and its place in the row.
        row = np.repeat(np.arange(size), lengths)
        within = np.arange(int(lengths.sum())) - np.repeat(start[:-1] - start[0], lengths)
        data[at[row] + head + within] = text[start[0] : start[-1]]
        return pa.Array.from_buffers(
            pa.large_binary(), size, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
        )


def feature_field(view: str, feature: str) -> bytes:
    """Feast's Redis hash field of a feature: murmur3-32 of "view:feature", little-endian."""
    import mmh3

    return struct.pack("<I", mmh3.hash(f"{view}:{feature}", signed=False))


def parse_connection_string(text: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """Feast's connection string host:port[,host:port...][,key=value...], read as Feast
    reads it (values are JSON where they parse as JSON): (nodes, options)."""
    nodes: list[tuple[str, int]] = []
    params: dict[str, Any] = {}
    for part in text.split(","):
        if "=" in part:
            key, raw = part.split("=", 1)
            try:
                params[key] = json.loads(raw)
            except json.JSONDecodeError:
                params[key] = raw
        else:
            host, _, port = part.rpartition(":")
            nodes.append((host, int(port)))
    # A hung Redis must fail the call fast (UNAVAILABLE), not hang it; the
    # connection string can say otherwise.
    params.setdefault("socket_timeout", REDIS_TIMEOUT_SECONDS)
    params.setdefault("socket_connect_timeout", REDIS_TIMEOUT_SECONDS)
    return nodes, params


def redis_client(redis_type: str, connection_string: str, asynchronous: bool = False) -> Any:
    """A redis-py client for Feast's connection string."""
    if asynchronous:
        from redis.asyncio import Redis
        from redis.asyncio.cluster import ClusterNode, RedisCluster
    else:
        from redis import Redis
        from redis.cluster import ClusterNode, RedisCluster

    nodes, params = parse_connection_string(connection_string)
    if redis_type == "redis_cluster":
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in nodes], **params)
    first_host, first_port = nodes[0]
    return Redis(host=first_host, port=first_port, **params)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


FLOAT_VAL_TAG = b"\x35"  # field 6 (float_val), wire type 5 (32-bit)
FLOAT_LIST_VAL_TAG = b"\x82\x01"  # field 16 (float_list_val), wire type 2 (bytes)
PACKED_VAL_TAG = b"\x0a"  # FloatList.val: field 1, packed


def float_values(column: pa.Array) -> pa.BinaryArray:
    """Serialised ValueProtos of a float32 column, built as one buffer: a tag and the
    four little-endian bytes per value; b"" for a null or a NaN (Feast's conversion)."""
    raw = pc.fill_null(column.cast(pa.float32()), 0.0).to_numpy(zero_copy_only=False)
    size = len(raw)
    body = np.empty((size, 5), dtype=np.uint8)
    body[:, 0] = FLOAT_VAL_TAG[0]
    body[:, 1:] = raw.astype("<f4").view(np.uint8).reshape(size, 4)
    empty = np.isnan(raw) | ~np.asarray(column.is_valid())
    lengths = np.where(empty, 0, 5)
    offsets = np.zeros(size + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = body[~empty].tobytes()
    return pa.Array.from_buffers(
        pa.binary(), size, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def float_list_values(column: pa.Array) -> pa.LargeBinaryArray:
    """Serialised ValueProtos of a list<float32> column, built as one buffer: per row,
    the FloatList header for its length and its packed values; b"" for a null."""
    column = column.cast(pa.list_(pa.float32()))
    size = len(column)
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    counts = pc.fill_null(pc.list_value_length(column), 0).to_numpy().astype(np.int64)
    flat = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype("<f4")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])  # each row's first value
    headers = {int(n): _float_list_header(int(n)) for n in np.unique(counts[valid])}
    if len(headers) == 1 and valid.all():  # fixed width, no nulls: one reshape
        ((n, header),) = headers.items()
        block = np.empty((size, len(header) + 4 * n), dtype=np.uint8)
        block[:, : len(header)] = np.frombuffer(header, dtype=np.uint8)
        block[:, len(header) :] = flat.view(np.uint8).reshape(size, 4 * n)
        offsets = np.arange(size + 1, dtype=np.int64) * block.shape[1]
        return pa.Array.from_buffers(
            pa.large_binary(), size, [None, pa.py_buffer(offsets), pa.py_buffer(block)]
        )
    widths = np.zeros(size, dtype=np.int64)
    for n, header in headers.items():
        widths[valid & (counts == n)] = len(header) + 4 * n
    offsets = np.concatenate([[0], np.cumsum(widths)])
    data = np.empty(int(offsets[-1]), dtype=np.uint8)
    # One gather per distinct length: a single one for a fixed-width vector.
    for n, header in headers.items():
        rows = np.flatnonzero(valid & (counts == n))
        block = np.empty((rows.size, len(header) + 4 * n), dtype=np.uint8)
        block[:, : len(header)] = np.frombuffer(header, dtype=np.uint8)
        gathered = flat[starts[rows][:, None] + np.arange(n)[None, :]]
        block[:, len(header) :] = gathered.view(np.uint8).reshape(rows.size, 4 * n)
        data[offsets[rows][:, None] + np.arange(block.shape[1])[None, :]] = block
    return pa.Array.from_buffers(
        pa.large_binary(), size, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def string_list_values(column: pa.Array) -> pa.LargeBinaryArray:
    """Serialised ValueProtos of a list<string> column (string_list_val); b"" for a null.
    Row by row with Feast's own proto classes: such views are small (recent items)."""
    from feast.protos.feast.types.Value_pb2 import StringList, Value

    rows = column.to_pylist()
    serialised = [
        b"" if row is None else Value(string_list_val=StringList(val=row)).SerializeToString()
        for row in rows
    ]
    return pa.array(serialised, pa.large_binary())


def _float_list_header(count: int) -> bytes:
    packed = 4 * count
    inner = PACKED_VAL_TAG + _varint(packed) if count else b""
    return FLOAT_LIST_VAL_TAG + _varint(len(inner) + packed) + inner


def sqlite_event_ts(moment: datetime) -> int:
    """event_ts as Feast's SQLite store writes it: the naive UTC time adapted by
    datetime.timestamp(), which reads a naive time as local time."""
    return int(moment.astimezone(UTC).replace(tzinfo=None).timestamp())


def redis_timestamp(moment: datetime) -> bytes:
    """The "_ts:<view>" field: a serialised google.protobuf.Timestamp, as Feast writes it."""
    from google.protobuf.timestamp_pb2 import Timestamp

    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp.SerializeToString()
