import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Event(_message.Message):
    __slots__ = ("event_id", "user_id", "item_id", "type", "timestamp", "query")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    user_id: str
    item_id: str
    type: str
    timestamp: _timestamp_pb2.Timestamp
    query: str
    def __init__(self, event_id: _Optional[str] = ..., user_id: _Optional[str] = ..., item_id: _Optional[str] = ..., type: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., query: _Optional[str] = ...) -> None: ...

class LogEventsRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class LogEventsResponse(_message.Message):
    __slots__ = ("accepted", "duplicates", "rejected")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    duplicates: int
    rejected: _containers.RepeatedCompositeFieldContainer[RejectedEvent]
    def __init__(self, accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[RejectedEvent, _Mapping]]] = ...) -> None: ...

class RejectedEvent(_message.Message):
    __slots__ = ("index", "event_id", "reason")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    index: int
    event_id: str
    reason: str
    def __init__(self, index: _Optional[int] = ..., event_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GetServingInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServingInfo(_message.Message):
    __slots__ = ("model_version", "model_loaded_at", "feature_service", "cache_age_seconds", "last_materialization", "cached_items")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SERVICE_FIELD_NUMBER: _ClassVar[int]
    CACHE_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LAST_MATERIALIZATION_FIELD_NUMBER: _ClassVar[int]
    CACHED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    model_loaded_at: float
    feature_service: str
    cache_age_seconds: float
    last_materialization: float
    cached_items: int
    def __init__(self, model_version: _Optional[str] = ..., model_loaded_at: _Optional[float] = ..., feature_service: _Optional[str] = ..., cache_age_seconds: _Optional[float] = ..., last_materialization: _Optional[float] = ..., cached_items: _Optional[int] = ...) -> None: ...

class RankRequest(_message.Message):
    __slots__ = ("user_id", "candidate_item_ids", "top_k", "query", "explain", "page_size", "retrieval_size", "exclude_interacted", "block_item_ids", "query_matches_only", "max_per_category", "diversity_window", "mmr_lambda", "exploration_temperature", "seed")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    RETRIEVAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_INTERACTED_FIELD_NUMBER: _ClassVar[int]
    BLOCK_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    QUERY_MATCHES_ONLY_FIELD_NUMBER: _ClassVar[int]
    MAX_PER_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    DIVERSITY_WINDOW_FIELD_NUMBER: _ClassVar[int]
    MMR_LAMBDA_FIELD_NUMBER: _ClassVar[int]
    EXPLORATION_TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    candidate_item_ids: _containers.RepeatedScalarFieldContainer[str]
    top_k: int
    query: str
    explain: bool
    page_size: int
    retrieval_size: int
    exclude_interacted: bool
    block_item_ids: _containers.RepeatedScalarFieldContainer[str]
    query_matches_only: bool
    max_per_category: int
    diversity_window: int
    mmr_lambda: float
    exploration_temperature: float
    seed: int
    def __init__(self, user_id: _Optional[str] = ..., candidate_item_ids: _Optional[_Iterable[str]] = ..., top_k: _Optional[int] = ..., query: _Optional[str] = ..., explain: _Optional[bool] = ..., page_size: _Optional[int] = ..., retrieval_size: _Optional[int] = ..., exclude_interacted: _Optional[bool] = ..., block_item_ids: _Optional[_Iterable[str]] = ..., query_matches_only: _Optional[bool] = ..., max_per_category: _Optional[int] = ..., diversity_window: _Optional[int] = ..., mmr_lambda: _Optional[float] = ..., exploration_temperature: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class RankResponse(_message.Message):
    __slots__ = ("items", "model_version", "flags", "removed")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RankedItem]
    model_version: str
    flags: _containers.RepeatedScalarFieldContainer[ScoreParts.Flag]
    removed: _containers.RepeatedCompositeFieldContainer[RemovedItem]
    def __init__(self, items: _Optional[_Iterable[_Union[RankedItem, _Mapping]]] = ..., model_version: _Optional[str] = ..., flags: _Optional[_Iterable[_Union[ScoreParts.Flag, str]]] = ..., removed: _Optional[_Iterable[_Union[RemovedItem, _Mapping]]] = ...) -> None: ...

class RemovedItem(_message.Message):
    __slots__ = ("item_id", "rule")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    rule: str
    def __init__(self, item_id: _Optional[str] = ..., rule: _Optional[str] = ...) -> None: ...

class RankedItem(_message.Message):
    __slots__ = ("item_id", "rank", "score", "parts")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    rank: int
    score: float
    parts: ScoreParts
    def __init__(self, item_id: _Optional[str] = ..., rank: _Optional[int] = ..., score: _Optional[float] = ..., parts: _Optional[_Union[ScoreParts, _Mapping]] = ...) -> None: ...

class ScoreParts(_message.Message):
    __slots__ = ("similarity", "bias", "model_score", "heuristic_score", "user_feature_age_seconds", "item_feature_age_seconds", "flags", "embedding_score", "retrieval_source", "bm25", "query_relevance", "rule", "semantic_similarity")
    class Flag(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        FLAG_UNSPECIFIED: _ClassVar[ScoreParts.Flag]
        COLD_START_USER: _ClassVar[ScoreParts.Flag]
        UNKNOWN_ITEM: _ClassVar[ScoreParts.Flag]
        HEURISTIC: _ClassVar[ScoreParts.Flag]
        STALE_FEATURES: _ClassVar[ScoreParts.Flag]
        DEGRADED: _ClassVar[ScoreParts.Flag]
    FLAG_UNSPECIFIED: ScoreParts.Flag
    COLD_START_USER: ScoreParts.Flag
    UNKNOWN_ITEM: ScoreParts.Flag
    HEURISTIC: ScoreParts.Flag
    STALE_FEATURES: ScoreParts.Flag
    DEGRADED: ScoreParts.Flag
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    BIAS_FIELD_NUMBER: _ClassVar[int]
    MODEL_SCORE_FIELD_NUMBER: _ClassVar[int]
    HEURISTIC_SCORE_FIELD_NUMBER: _ClassVar[int]
    USER_FEATURE_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ITEM_FEATURE_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_SCORE_FIELD_NUMBER: _ClassVar[int]
    RETRIEVAL_SOURCE_FIELD_NUMBER: _ClassVar[int]
    BM25_FIELD_NUMBER: _ClassVar[int]
    QUERY_RELEVANCE_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    similarity: float
    bias: float
    model_score: float
    heuristic_score: float
    user_feature_age_seconds: float
    item_feature_age_seconds: float
    flags: _containers.RepeatedScalarFieldContainer[ScoreParts.Flag]
    embedding_score: float
    retrieval_source: str
    bm25: float
    query_relevance: float
    rule: str
    semantic_similarity: float
    def __init__(self, similarity: _Optional[float] = ..., bias: _Optional[float] = ..., model_score: _Optional[float] = ..., heuristic_score: _Optional[float] = ..., user_feature_age_seconds: _Optional[float] = ..., item_feature_age_seconds: _Optional[float] = ..., flags: _Optional[_Iterable[_Union[ScoreParts.Flag, str]]] = ..., embedding_score: _Optional[float] = ..., retrieval_source: _Optional[str] = ..., bm25: _Optional[float] = ..., query_relevance: _Optional[float] = ..., rule: _Optional[str] = ..., semantic_similarity: _Optional[float] = ...) -> None: ...
