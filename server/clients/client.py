"""A Ranker client: streams a ranking and prints it as the pages arrive."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TextIO

import grpc

from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc

FLAG_NAMES = {
    value.number: value.name for value in pb.ScoreParts.Flag.DESCRIPTOR.values if value.number
}


def rank(
    channel: grpc.Channel,
    request: pb.RankRequest,
    timeout: float,
    metadata: tuple[tuple[str, str], ...] = (),
) -> Iterator[pb.RankResponse]:
    """The pages of one Rank call, as they arrive."""
    stub = pb_grpc.RankerStub(channel)
    yield from stub.Rank(request, timeout=timeout, metadata=metadata or None)


def format_item(item: pb.RankedItem, explain: bool) -> str:
    line = f"{item.rank:>5}  {item.score:.6f}  {item.item_id}"
    if not explain:
        return line
    p = item.parts
    flags = ",".join(FLAG_NAMES[f] for f in p.flags) or "-"
    return (
        f"{line}  similarity={p.similarity:.4f} bias={p.bias:.4f} model={p.model_score:.4f} "
        f"heuristic={p.heuristic_score:.4f} user_age={p.user_feature_age_seconds:.0f}s "
        f"item_age={p.item_feature_age_seconds:.0f}s flags={flags}"
    )


def print_ranking(pages: Iterator[pb.RankResponse], explain: bool, out: TextIO) -> int:
    """Print each page as it arrives; returns the number of items."""
    count = 0
    for page in pages:
        if page.model_version:
            print(f"# model {page.model_version}", file=out, flush=True)
        for item in page.items:
            print(format_item(item, explain), file=out)
            count += 1
        out.flush()
    return count
