"""Proto <-> domain: request validation, and the ranking as pages of messages."""

from __future__ import annotations

from collections.abc import Iterator

from server.config import Settings
from server.errors import InvalidRequest
from server.pipeline import Parts, Ranking, RankQuery
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
    unique = dict.fromkeys(ids)  # first occurrences, in order; the loops run in C
    if "" in unique:
        raise InvalidRequest(f"candidate_item_ids[{ids.index('')}] is empty")
    if max(map(len, unique)) > limit:
        position = next(i for i, item in enumerate(ids) if len(item) > limit)
        raise InvalidRequest(
            f"candidate_item_ids[{position}] is {len(ids[position])} characters; "
            f"the limit is {limit}"
        )
    return RankQuery(
        user_id=request.user_id,
        candidates=ids if len(unique) == len(ids) else list(unique),
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
    if total == 0:  # still one page, which names the model
        yield pb.RankResponse(model_version=ranking.model_version).SerializeToString()
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
