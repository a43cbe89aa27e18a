"""RankResponse pages as protobuf wire bytes, written with numpy over all items at once.

Building a page through the protobuf API costs a Python call per item. For the
common page (no score parts, ASCII ids of at most 116 bytes, ranks below 16384)
every RankedItem has a short fixed shape,

    0x0A len { 0x0A len(id) id  0x10 rank(1-2 bytes)  [0x1D float32 score] }

so the page is one [items, bytes] array filled column by column, compacted by
a mask of the bytes each item uses. Fields are in field-number order and zero
scores omitted, as protobuf's own encoder writes them: the bytes equal
RankResponse.SerializeToString() (tests hold that). Other pages return None and
are built through the protobuf API.
"""

from __future__ import annotations

import functools

import numpy as np

MAX_ID_BYTES = 116  # keeps every item's length in one varint byte
MAX_RANK = 16383  # ranks in at most two varint bytes


def encode_page(
    ids: list[str], first_rank: int, scores: np.ndarray, model_version: str
) -> bytes | None:
    n = len(ids)
    last_rank = first_rank + n - 1
    if n == 0 or last_rank > MAX_RANK or len(model_version) > 127 or not model_version.isascii():
        return None
    widest = max(map(len, ids))
    joined = "".join(ids)
    if widest > MAX_ID_BYTES or not joined.isascii():  # ASCII: a character is a byte
        return None
    bits = np.ascontiguousarray(scores, dtype="<f4").view("<u4")
    # Every id as long as the widest (the joined length tells), one rank width, every
    # score written: the common page, whose items are rows of one shape.
    if (
        len(joined) == n * widest
        and (last_rank <= 127 or first_rank > 127)
        and np.count_nonzero(bits) == n
    ):
        id_bytes = np.frombuffer(joined.encode("ascii"), dtype=np.uint8).reshape(n, widest)
        page = _uniform(id_bytes, widest, first_rank, bits)
    else:
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=n)
        id_bytes = np.array(ids, dtype=f"S{widest}").view(np.uint8).reshape(n, widest)
        ranks = np.arange(first_rank, last_rank + 1)
        page = _masked(id_bytes, lengths, widest, ranks, bits, bits != 0)
    if model_version:  # RankResponse.model_version
        page += bytes([0x12, len(model_version)]) + model_version.encode()
    return page


@functools.lru_cache(maxsize=256)
def _row(width: int, two: bool) -> np.ndarray:
    """The bytes every item of the uniform shape shares; id, rank and score left zero."""
    rank = [0x10, 0, 0] if two else [0x10, 0]
    row = np.array(
        [0x0A, 2 + width + len(rank) + 5, 0x0A, width, *[0] * width, *rank, 0x1D, 0, 0, 0, 0],
        dtype=np.uint8,
    )
    row.flags.writeable = False  # shared by every page of this shape
    return row


def _uniform(id_bytes: np.ndarray, width: int, first_rank: int, bits: np.ndarray) -> bytes:
    """Every item the same shape (the common page): its rows are the bytes, no mask."""
    n = bits.shape[0]
    two = first_rank > 127
    at = 4 + width  # where the rank field starts
    record = np.empty((n, at + 7 + two), dtype=np.uint8)
    record[:] = _row(width, two)  # RankResponse.items, RankedItem's tags and lengths
    record[:, 4:at] = id_bytes
    if two:
        ranks = np.arange(first_rank, first_rank + n)
        record[:, at + 1] = (ranks & 0x7F) | 0x80
        record[:, at + 2] = ranks >> 7
    else:
        record[:, at + 1] = np.arange(first_rank, first_rank + n, dtype=np.uint8)
    record[:, at + 3 + two :] = bits.view(np.uint8).reshape(n, 4)
    return record.tobytes()


def _masked(
    id_bytes: np.ndarray,
    lengths: np.ndarray,
    widest: int,
    ranks: np.ndarray,
    bits: np.ndarray,
    scored: np.ndarray,
) -> bytes:
    """Items of several shapes: the widest row for each, compacted by the bytes it uses."""
    n = ranks.shape[0]
    two = ranks > 127
    at = 4 + widest  # where the rank field starts
    record = np.empty((n, at + 8), dtype=np.uint8)
    record[:, 0] = 0x0A  # RankResponse.items
    record[:, 1] = 4 + lengths + two + 5 * scored  # the item's length
    record[:, 2] = 0x0A  # RankedItem.item_id
    record[:, 3] = lengths
    record[:, 4:at] = id_bytes
    record[:, at] = 0x10  # RankedItem.rank
    record[:, at + 1] = np.where(two, (ranks & 0x7F) | 0x80, ranks)
    record[:, at + 2] = ranks >> 7
    record[:, at + 3] = 0x1D  # RankedItem.score
    record[:, at + 4 :] = bits.view(np.uint8).reshape(n, 4)
    used = np.ones((n, at + 8), dtype=bool)
    used[:, 4:at] = np.arange(widest) < lengths[:, np.newaxis]
    used[:, at + 2] = two
    used[:, at + 3 :] = scored[:, np.newaxis]
    page: bytes = record[used].tobytes()
    return page
