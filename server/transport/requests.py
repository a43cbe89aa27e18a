"""RankRequest -> RankQuery: the request validated, each error naming the field and limit."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import DecodeError

from server.config import Settings
from server.errors import InvalidRequest
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.ranking.batch import RankQuery


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
