"""Pages written by server.wire are byte for byte protobuf's own serialisation."""

from __future__ import annotations

import numpy as np

from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.transport.wire import encode_page


def protobufs(ids: list[str], first: int, scores: np.ndarray, version: str) -> bytes:
    page = pb.RankResponse(model_version=version)
    for i, item_id in enumerate(ids):
        page.items.add(item_id=item_id, rank=first + i, score=float(scores[i]))
    return page.SerializeToString()


def test_random_pages_equal_protobufs_bytes() -> None:
    rng = np.random.default_rng(0)
    written = 0
    for trial in range(300):
        n = int(rng.integers(1, 300))
        longest = 130 if trial % 5 == 0 else 40  # some ids too long for the fast shape
        sizes = rng.integers(1, longest, n)
        if trial % 4 == 1:  # one shape for every item: the unmasked path
            sizes[:] = sizes[0]
        ids = ["".join(rng.choice(list("abz09_-"), int(size))) for size in sizes]
        first = int(rng.integers(1, 20000 if trial % 9 == 0 else 200))  # 1- and 2-byte ranks
        scores = rng.random(n).astype(np.float32)
        if trial % 4 != 1:
            scores[rng.random(n) < 0.2] = 0.0  # omitted, as protobuf omits zeros
        scores[rng.random(n) < 0.05] = -0.0  # not zero bits: written
        if trial % 8 == 5:  # ranks wholly past 127: two varint bytes each
            first = int(rng.integers(128, 5000))
        version = "" if trial % 3 else "v" * int(rng.integers(1, 20))
        page = encode_page(ids, first, scores, version)
        if page is not None:
            written += 1
            assert page == protobufs(ids, first, scores, version)
    assert written > 200


def test_pages_outside_the_fast_shape_are_left_to_protobuf() -> None:
    scores = np.ones(1, np.float32)
    assert encode_page(["é"], 1, scores, "") is None  # not ASCII
    assert encode_page(["x" * 117], 1, scores, "") is None  # length needs two varint bytes
    assert encode_page(["x"], 16384, scores, "") is None  # rank needs three varint bytes
    assert encode_page(["x"], 1, scores, "0001") == protobufs(["x"], 1, scores, "0001")
