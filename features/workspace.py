"""Where a workspace keeps its data, feature repo and models.

A workspace is one directory (``--home``) holding one data set end to end, so
several data sets can live side by side, and the stores its Feast repo uses.
Pure path and value arithmetic: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from features import names

ONLINE_STORES = ("sqlite", "redis", "redis_cluster")
OFFLINE_STORES = ("duckdb", "spark")
# Spark's master when none is set: this machine's cores.
SPARK_LOCAL = "local[*]"
# How stale a process's copy of the registry may get: a server sees a new
# `features apply` from another host within this many seconds.
REGISTRY_TTL_SECONDS = 60


@dataclass(frozen=True)
class Stores:
    """Where a Feast repo keeps its online features and its registry."""

    # sqlite (a file in the workspace), redis or redis_cluster.
    online_store: str = "sqlite"
    # Feast's Redis connection string host:port[,host:port ...][,db=N,password=...];
    # read only when online_store is not sqlite.
    redis: str = "127.0.0.1:6379"
    # Empty: a file in the repo; otherwise a SQLAlchemy URL that jobs and servers share.
    registry: str = ""
    # duckdb (in-process) or spark (Feast's Spark offline store, at spark's master).
    offline_store: str = "duckdb"
    # Spark settings, spark.master among them: the backfill's and the offline store's.
    spark: tuple[tuple[str, str], ...] = (("spark.master", SPARK_LOCAL),)
    # The event log (features.event_log): local (a SQLite file in the workspace) or
    # redis (a Redis Stream on the online store's Redis); empty = follow the online store.
    event_log: str = ""

    @property
    def event_log_kind(self) -> str:
        return self.event_log or ("local" if self.online_store == "sqlite" else "redis")

    def offline_config(self) -> dict[str, Any]:
        """feature_store.yaml's offline_store section."""
        if self.offline_store == "spark":
            conf = {"spark.sql.session.timeZone": "UTC", "spark.ui.enabled": "false"}
            return {"type": "spark", "spark_conf": {**conf, **dict(self.spark)}}
        return {"type": "duckdb"}

    def online_config(self) -> dict[str, Any]:
        """feature_store.yaml's online_store section; paths are relative to the repo."""
        if self.online_store == "sqlite":
            return {"type": "sqlite", "path": "data/online_store.db"}
        return {"type": "redis", "redis_type": self.online_store, "connection_string": self.redis}

    def registry_config(self) -> dict[str, Any]:
        """feature_store.yaml's registry section."""
        return {
            "registry_type": "sql" if self.registry else "file",
            "path": _psycopg3(self.registry) if self.registry else "data/registry.db",
            "cache_ttl_seconds": REGISTRY_TTL_SECONDS,
            # A materialization marks its views MATERIALIZING in the registry; without
            # this, a reader that refreshes its registry meanwhile is refused them.
            # Feast's warning that this is a no-op on a file registry is wrong: a file
            # registry is where it bites (tests/integration/test_online_stores.py;
            # features.store.open_store drops that warning).
            "serve_features_while_materializing": True,
        }


def _psycopg3(url: str) -> str:
    """Name the installed driver: SQLAlchemy reads a bare postgresql:// as psycopg2,
    which Feast rewrites with a warning on every start."""
    bare = "postgresql://"
    return "postgresql+psycopg://" + url[len(bare) :] if url.startswith(bare) else url


@dataclass(frozen=True)
class Workspace:
    home: Path
    stores: Stores = field(default_factory=Stores)

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def catalog_path(self) -> Path:
        return self.data_dir / "catalog.parquet"

    @property
    def users_path(self) -> Path:
        return self.data_dir / "users.parquet"

    @property
    def events_path(self) -> Path:
        return self.data_dir / "events.parquet"

    @property
    def logged_events_dir(self) -> Path:
        """Events the stream worker took from the event log, one parquet file per
        batch, in the events' schema: the next backfill and training read them."""
        return self.data_dir / "events-logged"

    def event_files(self) -> list[Path]:
        """Every training event file: the data set's, then the logged ones in log order."""
        return [self.events_path, *sorted(self.logged_events_dir.glob("*.parquet"))]

    @property
    def stream_dir(self) -> Path:
        """The embedded event log and the stream worker's state."""
        return self.home / "stream"

    @property
    def heldout_path(self) -> Path:
        """Held-out interactions for evaluation; never read by features or training."""
        return self.data_dir / "heldout.parquet"

    @property
    def manifest_path(self) -> Path:
        return self.data_dir / "manifest.json"

    @property
    def repo_dir(self) -> Path:
        """The Feast feature repo (feature_store.yaml + definitions)."""
        return self.home / "feature_repo"

    @property
    def offline_dir(self) -> Path:
        """Offline store: the timestamped feature tables, as parquet."""
        return self.repo_dir / "offline"

    @property
    def user_features_path(self) -> Path:
        return self.offline_dir / names.USER_VIEW

    @property
    def item_features_path(self) -> Path:
        return self.offline_dir / names.ITEM_VIEW

    @property
    def user_embeddings_path(self) -> Path:
        return self.offline_dir / names.USER_EMBEDDING_VIEW

    @property
    def user_recent_items_path(self) -> Path:
        return self.offline_dir / names.USER_RECENT_VIEW

    @property
    def user_history_path(self) -> Path:
        return self.offline_dir / names.USER_HISTORY_VIEW

    @property
    def item_text_path(self) -> Path:
        return self.offline_dir / names.ITEM_TEXT_VIEW

    @property
    def text_encoder_dir(self) -> Path:
        """The language model exported to ONNX (`shoprank features text-encoder`): the
        backfill embeds item text with it and the server encodes queries with it."""
        return self.home / "text_encoder"

    @property
    def item_embeddings_path(self) -> Path:
        return self.offline_dir / names.ITEM_EMBEDDING_VIEW

    @property
    def vocabulary_path(self) -> Path:
        return self.offline_dir / "vocabulary.json"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def example_path(self) -> Path:
        """A user and candidates to paste into ``shoprank rank``."""
        return self.home / "example.json"
