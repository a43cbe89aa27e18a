"""Feast ValueProto bytes of the two shapes a user row holds, read without the message.

A user read returns each feature as a serialised ValueProto. Parsing five of
them into messages and taking the floats back out cost about 30 us a request
here; the two shapes a user row uses are fixed enough to read straight off the
bytes:

    float_val       0x35 f32                                  (field 6, fixed32)
    float_list_val  0x82 0x01 len { 0x0A len f32 f32 ... }    (field 16, a packed FloatList)

Anything else (another type, an empty list, an unexpected layout) returns None,
and the caller parses the message instead. tests/test_user_reads.py holds these
tags to protobuf's own serialisation.
"""

from __future__ import annotations

import struct

import numpy as np

FLOAT_TAG = b"\x35"
FLOAT_LIST_TAG = b"\x82\x01"
PACKED_VALUES_TAG = 0x0A  # FloatList.val, packed

_unpack_float = struct.Struct("<f").unpack_from


def single_float(raw: bytes | None) -> float | None:
    """The float of a float_val, as protobuf reads it (a float32 widened); else None."""
    if raw is None or len(raw) != 5 or raw[:1] != FLOAT_TAG:
        return None
    value: float = _unpack_float(raw, 1)[0]
    return value


def packed_floats(raw: bytes | None) -> np.ndarray | None:
    """The float32 values of a non-empty float_list_val, a view of raw; else None."""
    if raw is None or raw[:2] != FLOAT_LIST_TAG:
        return None
    outer, at = _varint(raw, 2)
    if outer is None or at + outer != len(raw) or outer == 0 or raw[at] != PACKED_VALUES_TAG:
        return None
    inner, at = _varint(raw, at + 1)
    if inner is None or at + inner != len(raw) or inner % 4:
        return None
    return np.frombuffer(raw, dtype="<f4", count=inner // 4, offset=at)


def _varint(raw: bytes, at: int) -> tuple[int | None, int]:
    """(value, the index after it); None for a varint cut short or over 4 bytes."""
    value = shift = 0
    for position in range(at, min(at + 4, len(raw))):
        byte = raw[position]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position + 1
        shift += 7
    return None, at
