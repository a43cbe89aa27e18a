"""The server's configuration: one typed object, built once at the edge.

This is the only module that reads the environment. Values come from, in
order: command-line flags, ``SHOPRANK_*`` variables, the defaults below. An
unknown ``SHOPRANK_*`` variable is an error, so a typo cannot silently fall
back to a default.

Feast is configured from these settings as an object (``Settings.workspace``
carries the stores; features.store builds Feast's RepoConfig from them):
nothing writes the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from features.event_log import LOG_KINDS
from features.relevance import DEFAULT_LEXICAL_SHARE
from features.workspace import OFFLINE_STORES, ONLINE_STORES, SPARK_LOCAL, Stores, Workspace

ENV_PREFIX = "SHOPRANK_"
LOG_FORMATS = ("text", "json")
ON_STORE_FAILURE = ("degrade", "fail")


class ConfigError(ValueError):
    """A configuration value or key is not valid."""


@dataclass(frozen=True)
class Settings:
    home: Path = Path("var")
    host: str = "127.0.0.1"
    port: int = 50051
    # 0 = no metrics endpoint.
    metrics_port: int = 0
    # Requests over this many candidates get INVALID_ARGUMENT; the fetch and
    # the model grow linearly with it, so it bounds a request's cost.
    max_candidates: int = 5000
    # Ids longer than this are rejected; real ids are far shorter.
    max_id_length: int = 256
    # Items per streamed message when the caller asks for 0 (measured in bench/serve.py).
    default_page_size: int = 100
    # Rankings in flight at once before new ones get RESOURCE_EXHAUSTED.
    max_in_flight: int = 64
    # Server processes sharing the port; 0 = one per CPU core. A ranking is
    # CPU-bound Python, so processes, not threads, are what use more cores.
    processes: int = 0
    # Threads that run large rankings off the event loop.
    workers: int = 4
    # Rankings of at most this many candidates run on the event loop itself (about
    # 1 ms for 100 here): the hop to a thread and back cost more than that, a fifth
    # of the throughput (bench/serve.py). Larger ones run on a worker thread, so
    # one big call never holds up the small ones. The user read never blocks the
    # loop on a network store: Redis is read with an async client.
    inline_max_candidates: int = 500
    # Seconds in-flight calls get to finish on SIGTERM.
    grace_seconds: float = 5.0
    # ONNX Runtime intra-op threads; 1 suits small batches beside other requests.
    model_threads: int = 1
    # Feast online store: sqlite (a file in the workspace), redis or redis_cluster.
    online_store: str = "sqlite"
    # Feast's Redis connection string: host:port[,host:port ...][,db=N,password=...];
    # a cluster lists some of its nodes. Read only when online_store is not sqlite.
    redis: str = "127.0.0.1:6379"
    # Feast registry: empty = a file in the workspace's repo; otherwise a SQLAlchemy
    # URL (postgresql+psycopg://user@host:5432/db) that jobs and servers share.
    registry: str = ""
    # Feast offline store, for training's point-in-time joins: duckdb (the parquet
    # tables read in-process) or spark (the same tables, read by Feast's Spark store).
    offline_store: str = "duckdb"
    # Where `features backfill --engine spark` and the Spark offline store run:
    # local[*] (this machine's cores) or a cluster's master URL (spark://host:7077).
    spark_master: str = SPARK_LOCAL
    # More Spark settings for both, as key=value,key=value
    # (spark.executor.memory=8g,spark.sql.shuffle.partitions=400).
    spark_conf: str = ""
    # The event log LogEvents writes and the stream worker reads: local (a SQLite file
    # in the workspace) or redis (a Redis Stream on the online store's Redis, which
    # redis_cluster also serves); empty = local with SQLite, redis with Redis.
    event_log: str = ""
    # Events per LogEvents call; more is INVALID_ARGUMENT.
    max_events_per_call: int = 10_000
    # Events in the log that the stream worker has not applied yet; at this bound
    # LogEvents sheds with RESOURCE_EXHAUSTED and writes nothing (back-pressure).
    max_event_backlog: int = 1_000_000
    # How long an accepted event_id is remembered: a retry within it is a duplicate.
    event_dedup_seconds: float = 86_400.0
    # An event's query longer than this is rejected.
    max_query_length: int = 1024
    # `serve` runs the stream worker itself (in the supervisor when several processes
    # serve): the embedded default's one command for real-time features.
    stream_worker: bool = False
    # Items held in memory; the whole catalogue when it fits (1M items of 128
    # dims is about 0.6 GB), else the most recently used.
    item_cache_capacity: int = 1_000_000
    # How often the server asks the registry whether a materialization landed.
    cache_refresh_seconds: float = 5.0
    # A user read gives up after this long (the store clients' own timeout), and the
    # call is served from the recent-user cache or cold-start (server/sources/user_fallback.py).
    user_read_timeout_seconds: float = 0.05
    # What a call gets when the online store fails: degrade (the user's row as read in
    # the last stale_user_seconds, flagged STALE_FEATURES, else a cold-start ranking by
    # item bias, flagged DEGRADED), or fail (UNAVAILABLE, for callers with their own fallback).
    on_store_failure: str = "degrade"
    # How long a user's row, once read, may stand in for the store, and how many are kept.
    stale_user_seconds: float = 300.0
    stale_user_capacity: int = 100_000
    # How often the online store is probed while it is failing: recovery comes within this.
    store_probe_seconds: float = 0.5
    # How often the server reads models/CURRENT for a promoted or rolled-back model.
    model_poll_seconds: float = 2.0
    # OpenTelemetry traces go here when set: the standard OTEL_EXPORTER_OTLP_ENDPOINT,
    # read as it is (the OTLP exporter reads the other OTEL_* variables itself).
    otlp_endpoint: str = ""
    # Logs: text, or json (one object a line, and a line per Rank call with its
    # request id, taken from x-request-id metadata or made, and echoed back).
    log_format: str = "text"
    # TLS: PEM files of the server's certificate chain and key; empty = plaintext
    # (for loopback and a mesh that terminates TLS itself).
    tls_cert: str = ""
    tls_key: str = ""
    # Mutual TLS: PEM roots that a caller's certificate must chain to; empty =
    # callers need no certificate.
    tls_client_ca: str = ""
    # Bearer tokens, one per line, re-read when the file changes; empty = no
    # token check. Health stays open either way.
    auth_tokens: str = ""
    # The largest request gRPC accepts: 5000 candidates of 256-byte ids fit in
    # 1.3 MB. Larger ones get RESOURCE_EXHAUSTED from gRPC before any parsing.
    max_request_bytes: int = 2 * 1024 * 1024
    # The largest metadata (headers) a call may carry.
    max_metadata_bytes: int = 16 * 1024
    # Retrieval, for a Rank with no candidates: how many to retrieve by default (at
    # most max_candidates, which a request's own retrieval_size may not pass). Each
    # is ranked by the full pipeline (about 10 us apiece with the ranker, measured).
    retrieval_size: int = 200
    # Vector search is exact (one matrix-vector product) up to this many items, and
    # approximate (HNSW) beyond: exact at 1M items cost 29 ms a query here, HNSW 0.35.
    exact_retrieval_max_items: int = 50_000
    # Threads that build the HNSW graphs, on the cache refresh thread.
    retrieval_index_threads: int = 2
    # Business rules' defaults, each overridable per request (RankRequest):
    # leave out the items a user bought (or rated) from given candidates too;
    # retrieved ones always leave them out unless a request keeps them.
    exclude_interacted_given: bool = False
    # A file of item ids never to return, one per line; empty = none.
    block_list: str = ""
    # At most this many items of one category in the first ranks; 0 = off.
    max_per_category: int = 0
    # MMR's lambda; 0 = off.
    mmr_lambda: float = 0.0
    # Exploration's softmax temperature; 0 = off.
    exploration_temperature: float = 0.0
    # A query's relevance: lexical_share x BM25 + the rest x the semantic cosine of
    # its text vector with the item's (features/text_encoder.py). 1 = BM25 alone;
    # semantic needs the text encoder and the item text view (else BM25 alone).
    lexical_share: float = DEFAULT_LEXICAL_SHARE  # 0.75, chosen by measurement there
    # Distinct queries whose text vectors are kept (least recently used out); 0 = none.
    query_cache_size: int = 10_000

    @property
    def workspace(self) -> Workspace:
        """The workspace at home, with the Feast stores these settings name."""
        spark = (("spark.master", self.spark_master), *spark_pairs(self.spark_conf))
        stores = Stores(
            self.online_store, self.redis, self.registry, self.offline_store, spark, self.event_log
        )
        return Workspace(self.home, stores)


def spark_pairs(text: str) -> tuple[tuple[str, str], ...]:
    """SHOPRANK_SPARK_CONF's key=value,key=value, as pairs."""
    pairs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"spark_conf entry {part!r} is not key=value")
        pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


BOOLEANS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def _coerce(name: str, raw: str, kind: type) -> Any:
    try:
        if kind is bool:
            return BOOLEANS[raw.strip().lower()]
        if kind is Path:
            return Path(raw)
        return kind(raw)
    except (ValueError, KeyError):
        raise ConfigError(
            f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {kind.__name__}"
        ) from None


def _kinds() -> dict[str, type]:
    defaults = Settings()
    return {f.name: type(getattr(defaults, f.name)) for f in fields(Settings)}


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from SHOPRANK_* variables over the defaults."""
    environ = os.environ if environ is None else environ
    kinds = _kinds()
    values: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name not in kinds:
            known = ", ".join(ENV_PREFIX + k.upper() for k in kinds)
            raise ConfigError(f"unknown setting {key}; known: {known}")
        values[name] = _coerce(name, raw, kinds[name])
    if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        values["otlp_endpoint"] = environ["OTEL_EXPORTER_OTLP_ENDPOINT"]
    return validate(Settings(**values))


def with_overrides(settings: Settings, **overrides: Any) -> Settings:
    """Settings with the given non-None values replaced (command-line flags)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(given) - set(_kinds())
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    return validate(replace(settings, **given))


def validate(settings: Settings) -> Settings:
    for name in (
        "max_candidates",
        "max_id_length",
        "default_page_size",
        "max_in_flight",
        "workers",
        "model_threads",
        "item_cache_capacity",
        "max_request_bytes",
        "max_metadata_bytes",
        "stale_user_capacity",
        "max_events_per_call",
        "max_event_backlog",
        "max_query_length",
        "retrieval_size",
        "exact_retrieval_max_items",
        "retrieval_index_threads",
    ):
        if getattr(settings, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(settings, name)}")
    if not 0.0 <= settings.lexical_share <= 1.0:
        raise ConfigError(f"lexical_share must be in [0, 1], got {settings.lexical_share}")
    if settings.query_cache_size < 0:
        raise ConfigError(f"query_cache_size must be 0 or more, got {settings.query_cache_size}")
    if settings.max_per_category < 0:
        raise ConfigError(f"max_per_category must be 0 or more, got {settings.max_per_category}")
    if not 0.0 <= settings.mmr_lambda <= 1.0:
        raise ConfigError(f"mmr_lambda must be in [0, 1], got {settings.mmr_lambda}")
    if not 0.0 <= settings.exploration_temperature < float("inf"):
        raise ConfigError(
            f"exploration_temperature must be 0 or more, got {settings.exploration_temperature}"
        )
    for name in ("port", "metrics_port"):
        if not 0 <= getattr(settings, name) <= 65535:
            raise ConfigError(f"{name} must be a port number, got {getattr(settings, name)}")
    _validate_stores(settings)
    if settings.offline_store not in OFFLINE_STORES:
        raise ConfigError(
            f"offline_store must be one of {', '.join(OFFLINE_STORES)}, "
            f"got {settings.offline_store!r}"
        )
    spark_pairs(settings.spark_conf)
    if settings.log_format not in LOG_FORMATS:
        raise ConfigError(f"log_format must be text or json, got {settings.log_format!r}")
    for name in (
        "model_poll_seconds",
        "user_read_timeout_seconds",
        "stale_user_seconds",
        "store_probe_seconds",
        "event_dedup_seconds",
    ):
        if getattr(settings, name) <= 0:
            raise ConfigError(f"{name} must be above 0, got {getattr(settings, name)}")
    if settings.on_store_failure not in ON_STORE_FAILURE:
        raise ConfigError(
            f"on_store_failure must be degrade or fail, got {settings.on_store_failure!r}"
        )
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ConfigError("tls_cert and tls_key go together: give both, or neither")
    if settings.tls_client_ca and not settings.tls_cert:
        raise ConfigError("tls_client_ca needs tls_cert and tls_key: mutual TLS is TLS first")
    return settings


def _validate_stores(settings: Settings) -> None:
    if settings.online_store not in ONLINE_STORES:
        raise ConfigError(
            f"online_store must be one of {', '.join(ONLINE_STORES)}, got {settings.online_store!r}"
        )
    if settings.online_store != "sqlite" and not _is_redis_connection_string(settings.redis):
        raise ConfigError(
            "redis must be a Feast connection string host:port[,host:port][,key=value], "
            f"got {settings.redis!r}"
        )
    if settings.event_log not in ("", *LOG_KINDS):
        raise ConfigError(f"event_log must be empty, local or redis, got {settings.event_log!r}")
    if settings.registry and "://" not in settings.registry:
        raise ConfigError(
            "registry must be empty (a file in the workspace) or a SQLAlchemy URL such as "
            f"postgresql+psycopg://postgres@127.0.0.1:5432/shoprank, got {settings.registry!r}"
        )


def _is_redis_connection_string(text: str) -> bool:
    nodes = [part for part in text.split(",") if "=" not in part]
    return bool(nodes) and all(
        host and "/" not in host and port.isdigit()
        for host, _, port in (node.rpartition(":") for node in nodes)
    )
