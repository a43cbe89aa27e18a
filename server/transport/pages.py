"""Ranking -> pages of RankResponse, serialised, best first."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from server.errors import CallEnded
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.ranking.batch import DEGRADED, FRESH, RULES, SOURCES, STALE, Parts, Ranking
from server.ranking.pipeline import HEURISTIC_VERSION
from server.transport.wire import encode_page

Flag = pb.ScoreParts.Flag


# A ranking's own flags, by how its user features were served.
SERVED_FLAGS = {FRESH: [], STALE: [Flag.STALE_FEATURES], DEGRADED: [Flag.DEGRADED]}


def _flags(ranking: Ranking, parts: Parts, i: int) -> list[pb.ScoreParts.Flag]:
    flags: list[pb.ScoreParts.Flag] = list(SERVED_FLAGS[ranking.served])
    if ranking.cold_start and ranking.served != DEGRADED:  # a degraded user may be known
        flags.append(Flag.COLD_START_USER)
    if parts.unknown_item[i]:
        flags.append(Flag.UNKNOWN_ITEM)
    if ranking.model_version == HEURISTIC_VERSION and not ranking.cold_start:
        flags.append(Flag.HEURISTIC)
    return flags


def _parts(ranking: Ranking, parts: Parts, i: int) -> pb.ScoreParts:
    return pb.ScoreParts(
        similarity=float(parts.similarity[i]),
        bias=float(parts.bias[i]),
        model_score=float(parts.model_score[i]),
        heuristic_score=float(parts.heuristic[i]),
        user_feature_age_seconds=ranking.user_age,
        item_feature_age_seconds=float(parts.item_age[i]),
        flags=_flags(ranking, parts, i),
        embedding_score=float(parts.embedding_score[i]),
        retrieval_source=SOURCES[parts.source[i]],
        bm25=float(parts.bm25[i]),
        semantic_similarity=float(parts.semantic[i]),
        query_relevance=float(parts.query_relevance[i]),
        rule=_rule(parts, i),
    )


def _rule(parts: Parts, i: int) -> str:
    code = int(parts.rule[i])
    return f"{RULES[code]}: from rank {int(parts.rule_from[i])}" if code else ""


def to_pages(ranking: Ranking, page_size: int) -> Iterator[bytes]:
    """Consecutive pages of at most page_size items, as serialised RankResponse
    messages; the first names the model. Pages without parts are written by
    server.wire in one numpy pass where their shape allows."""
    scores = ranking.scores
    ids = ranking.item_ids
    total = len(ids)
    flags = SERVED_FLAGS[ranking.served]
    if total == 0:  # still one page, which names the model
        page = pb.RankResponse(model_version=ranking.model_version, flags=flags)
        _add_removed(page, ranking)
        yield page.SerializeToString()
    for start in range(0, total, page_size):
        end = min(start + page_size, total)
        version = ranking.model_version if start == 0 else ""
        fast = None
        if ranking.parts is None and not (flags and start == 0):
            fast = encode_page(ids[start:end], start + 1, scores[start:end], version)
        yield fast if fast is not None else _page(ranking, start, end, version).SerializeToString()


def _page(ranking: Ranking, start: int, end: int, version: str) -> pb.RankResponse:
    page = pb.RankResponse(model_version=version)
    if start == 0:
        page.flags.extend(SERVED_FLAGS[ranking.served])
        _add_removed(page, ranking)
    add = page.items.add
    scores = ranking.scores[start:end].tolist()
    for i in range(start, end):
        item = add(item_id=ranking.item_ids[i], rank=i + 1, score=scores[i - start])
        if ranking.parts is not None:
            item.parts.CopyFrom(_parts(ranking, ranking.parts, i))
    return page


def _add_removed(page: pb.RankResponse, ranking: Ranking) -> None:
    for item_id, rule in ranking.removed or ():
        page.removed.add(item_id=item_id, rule=rule)


async def write_pages(context: grpc.aio.ServicerContext, ranking: Ranking, page_size: int) -> bytes:
    """Write every page but the last as it is made; return the last, which gRPC
    sends in one batch with the call's status (server.transport.handlers)."""
    pages = to_pages(ranking, page_size)
    last = next(pages)
    for page in pages:
        try:
            await context.write(last)
        except Exception as error:
            # A write fails only on a call that is over; grpc.aio says so before
            # its context does (context.cancelled() can still be False here).
            raise CallEnded(str(error)) from error
        last = page
    return last
