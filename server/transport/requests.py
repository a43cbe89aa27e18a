"""RankRequest -> RankQuery: the request validated, each error naming the field and limit."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from features.text import terms
from server.config import Settings
from server.errors import InvalidRequest
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.ranking.batch import RankQuery, Rules


@dataclass(frozen=True)
class Malformed:
    """Bytes that are no RankRequest: kept so the servicer can answer
    INVALID_ARGUMENT, where a failing deserializer would make gRPC say UNKNOWN."""

    reason: str


def parse(data: bytes) -> pb.RankRequest | Malformed:
    try:
        return pb.RankRequest.FromString(data)
    except DecodeError as error:
        return Malformed(str(error))


def well_formed(request: pb.RankRequest | Malformed) -> pb.RankRequest:
    if isinstance(request, Malformed):
        raise InvalidRequest(f"the request is not a shoprank.v1.RankRequest: {request.reason}")
    return request


def to_query(request: pb.RankRequest, settings: Settings) -> RankQuery:
    """A valid query, or InvalidRequest naming the field and the limit."""
    limit = settings.max_id_length
    if not request.user_id:
        raise InvalidRequest("user_id is required")
    if len(request.user_id) > limit:
        raise InvalidRequest(f"user_id is {len(request.user_id)} characters; the limit is {limit}")
    ids = _ids(request.candidate_item_ids, "candidate_item_ids", settings)
    unique = dict.fromkeys(ids)  # first occurrences, in order; the loop runs in C
    blocked = _ids(request.block_item_ids, "block_item_ids", settings)
    exclude = request.exclude_interacted if request.HasField("exclude_interacted") else None
    if exclude is None:
        exclude = settings.exclude_interacted_given if ids else True
    return RankQuery(
        user_id=request.user_id,
        candidates=ids if len(unique) == len(ids) else list(unique),
        top_k=request.top_k,
        explain=request.explain,
        terms=_terms(request.query, settings),
        text=request.query,
        retrieval_size=_retrieval_size(request, settings) if not ids else 0,
        exclude_interacted=exclude,
        blocked=frozenset(blocked),
        matches_only=request.query_matches_only,
        rules=_rules(request, settings),
    )


def _ids(given: Sequence[str], field: str, settings: Settings) -> list[str]:
    count = len(given)
    if count > settings.max_candidates:
        raise InvalidRequest(f"{count} {field}; the limit is {settings.max_candidates} per request")
    ids = list(given)
    if not ids:
        return ids
    limit = settings.max_id_length
    if "" in ids:
        raise InvalidRequest(f"{field}[{ids.index('')}] is empty")
    if max(map(len, ids)) > limit:
        position = next(i for i, item in enumerate(ids) if len(item) > limit)
        raise InvalidRequest(
            f"{field}[{position}] is {len(ids[position])} characters; the limit is {limit}"
        )
    return ids


def _terms(query: str, settings: Settings) -> tuple[str, ...]:
    size = len(query.encode())
    if size > settings.max_query_length:
        raise InvalidRequest(
            f"query is {size} bytes; the limit is {settings.max_query_length} bytes"
        )
    return tuple(terms(query)) if query else ()


def _retrieval_size(request: pb.RankRequest, settings: Settings) -> int:
    if not request.retrieval_size:
        return min(settings.retrieval_size, settings.max_candidates)
    size = request.retrieval_size
    if size > settings.max_candidates:
        raise InvalidRequest(
            f"retrieval_size is {size}; the limit is {settings.max_candidates} (max candidates)"
        )
    return size


def _rules(request: pb.RankRequest, settings: Settings) -> Rules:
    cap = (
        request.max_per_category
        if request.HasField("max_per_category")
        else settings.max_per_category
    )
    lam = request.mmr_lambda if request.HasField("mmr_lambda") else settings.mmr_lambda
    if not 0.0 <= lam <= 1.0:  # NaN fails too
        raise InvalidRequest(f"mmr_lambda is {lam}; it must be in [0, 1] (0 = off)")
    temperature = (
        request.exploration_temperature
        if request.HasField("exploration_temperature")
        else settings.exploration_temperature
    )
    if not 0.0 <= temperature < math.inf:
        raise InvalidRequest(
            f"exploration_temperature is {temperature}; it must be 0 (off) or a positive number"
        )
    return Rules(
        max_per_category=cap,
        diversity_window=request.diversity_window,
        mmr_lambda=lam,
        temperature=temperature,
        seed=request.seed,
    )
