"""Proto <-> domain: request validation, and the ranking as pages of messages."""

from __future__ import annotations

from collections.abc import Iterator

from server.config import Settings
from server.errors import InvalidRequest
from server.pipeline import Parts, Ranking, RankQuery, distinct
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.wire import encode_page

Flag = pb.ScoreParts.Flag


def to_query(request: pb.RankRequest, settings: Settings) -> RankQuery:
    """A valid query, or InvalidRequest naming the field and the limit."""
    limit = settings.max_id_length
    if not request.user_id:
        raise InvalidRequest("user_id is required")
    if len(request.user_id) > limit:
        raise InvalidRequest(f"user_id is {len(request.user_id)} characters; the limit is {limit}")
    if not request.candidate_item_ids:
        raise InvalidRequest("candidate_item_ids is empty; send at least one item to rank")
    count = len(request.candidate_item_ids)
    if count > settings.max_candidates:
        raise InvalidRequest(
            f"{count} candidate_item_ids; the limit is {settings.max_candidates} per request"
        )
    ids = list(request.candidate_item_ids)
    lengths = list(map(len, ids))  # the loops run in C: no per-candidate bytecode
    if min(lengths) == 0:
        raise InvalidRequest(f"candidate_item_ids[{lengths.index(0)}] is empty")
    if max(lengths) > limit:
        position = next(i for i, n in enumerate(lengths) if n > limit)
        raise InvalidRequest(
            f"candidate_item_ids[{position}] is {lengths[position]} characters; "
            f"the limit is {limit}"
        )
    return RankQuery(
        user_id=request.user_id,
        candidates=distinct(ids),
        top_k=request.top_k,
        explain=request.explain,
    )


def _flags(ranking: Ranking, parts: Parts, i: int) -> list[pb.ScoreParts.Flag]:
    flags: list[pb.ScoreParts.Flag] = []
    if ranking.cold_start:
        flags.append(Flag.COLD_START_USER)
    if parts.unknown_item[i]:
        flags.append(Flag.UNKNOWN_ITEM)
    if ranking.model_version == "heuristic" and not ranking.cold_start:
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
    )


def to_pages(ranking: Ranking, page_size: int) -> Iterator[bytes]:
    """Consecutive pages of at most page_size items, as serialised RankResponse
    messages; the first names the model. Pages without parts are written by
    server.wire in one numpy pass where their shape allows."""
    scores = ranking.scores
    ids = ranking.item_ids
    total = len(ids)
    for start in range(0, total, page_size):
        end = min(start + page_size, total)
        version = ranking.model_version if start == 0 else ""
        fast = None
        if ranking.parts is None:
            fast = encode_page(ids[start:end], start + 1, scores[start:end], version)
        yield fast if fast is not None else _page(ranking, start, end, version).SerializeToString()


def _page(ranking: Ranking, start: int, end: int, version: str) -> pb.RankResponse:
    page = pb.RankResponse(model_version=version)
    add = page.items.add
    scores = ranking.scores[start:end].tolist()
    for i in range(start, end):
        item = add(item_id=ranking.item_ids[i], rank=i + 1, score=scores[i - start])
        if ranking.parts is not None:
            item.parts.CopyFrom(_parts(ranking, ranking.parts, i))
    return page
