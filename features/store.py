"""The Feast repo's life cycle in a workspace: install, apply, materialize."""

from __future__ import annotations

import json
import logging
import os
import runpy
import shutil
import sqlite3
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from features import names
from features.workspace import Workspace

if TYPE_CHECKING:  # feast takes seconds to import; only the commands that need it pay
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

REPO_TEMPLATE = Path(__file__).parent / "repo"
DEFINITIONS = "definitions.py"
CONFIG_FILE = "feature_store.yaml"


def repo_settings(workspace: Workspace) -> dict[str, Any]:
    """feature_store.yaml's contents for this workspace: the template's project,
    provider and offline store, with the workspace's online store and registry."""
    template = yaml.safe_load((REPO_TEMPLATE / CONFIG_FILE).read_text())
    stores = workspace.stores
    return {
        **template,
        "online_store": stores.online_config(),
        "offline_store": stores.offline_config(),
        "registry": stores.registry_config(),
    }


def install_repo(workspace: Workspace) -> None:
    """Write the repo into the workspace, where its relative paths resolve, with its
    stores resolved: the data team's plain `feast -c <home>/feature_repo ...` then
    sees the same stores as `shoprank`, with no variables set."""
    (workspace.repo_dir / "data").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO_TEMPLATE / DEFINITIONS, workspace.repo_dir / DEFINITIONS)
    body = yaml.safe_dump(repo_settings(workspace), sort_keys=False)
    header = "# Written by `shoprank features apply` from its settings (SHOPRANK_*); see README.\n"
    path = workspace.repo_dir / CONFIG_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(header + body)
    os.replace(tmp, path)


def open_store(workspace: Workspace) -> FeatureStore:
    """The workspace repo's FeatureStore, configured from the workspace's stores.

    The configuration is an object built from the settings, not the yaml on disk,
    so a server whose flags name another store never reads a stale file.
    """
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    logging.getLogger("feast.repo_config").addFilter(_not_the_file_registry_warning)
    repo_dir = workspace.repo_dir
    config = RepoConfig(**repo_settings(workspace))
    config.repo_path = repo_dir
    return FeatureStore(repo_path=str(repo_dir), config=config)


def _not_the_file_registry_warning(record: logging.LogRecord) -> bool:
    """Feast calls serve_features_while_materializing a no-op on a file registry,
    where it is what keeps readers going through a materialization."""
    return not record.getMessage().startswith("`serve_features_while_materializing` is enabled")


def definitions(repo_dir: Path, offline_store: str = "duckdb") -> list[Any]:
    """The repo's entities, feature views and services, with file sources anchored
    at repo_dir.

    Feast's DuckDB offline store reads a FileSource path as given, relative to
    the working directory, so sources are registered with absolute paths. With
    the Spark offline store, each view reads the same parquet files through a
    SparkSource: the repo declares its tables once, the settings say who reads them.
    """
    from feast import Entity, FeatureService, FeatureView, FileSource

    # Run the repo's own file afresh: each call gets new objects to anchor.
    found = runpy.run_path(str(repo_dir / DEFINITIONS)).values()
    for source in (value for value in found if isinstance(value, FileSource)):
        path = Path(source.file_options.uri)
        if not path.is_absolute():
            source.file_options.uri = str(repo_dir.resolve() / path)
    objects = [v for v in found if isinstance(v, Entity | FeatureView | FeatureService)]
    if offline_store == "spark":
        for view in (v for v in objects if isinstance(v, FeatureView)):
            # A batch-sourced view keeps its source in these two (feast.FeatureView).
            view.data_source = view.batch_source = _spark_source(view.batch_source)
    return objects


def _spark_source(source: Any) -> Any:
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import (
        SparkSource,
    )

    return SparkSource(
        name=source.name,
        path=source.file_options.uri,
        file_format="parquet",
        timestamp_field=source.timestamp_field,
    )


def apply(workspace: Workspace) -> list[str]:
    """Register the entities, feature views and services; returns their names."""
    install_repo(workspace)
    objects = definitions(workspace.repo_dir, workspace.stores.offline_store)
    store = open_store(workspace)
    store.apply(objects)
    use_write_ahead_log(store)
    return [o.name for o in objects]


def sqlite_online_path(config: RepoConfig) -> Path | None:
    """The SQLite online store's file, resolved as Feast resolves it; None for other stores."""
    online = config.online_store
    if online.type != "sqlite":
        return None
    path = Path(online.path)  # relative to the repo
    if not path.is_absolute() and config.repo_path:
        path = Path(config.repo_path) / path
    return path


def use_write_ahead_log(store: FeatureStore) -> None:
    """Put a SQLite online store in WAL mode, which the file keeps: servers then read
    while a materialization writes, where the default rollback journal locks every
    reader out while a commit is written."""
    path = sqlite_online_path(store.config)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path, timeout=30.0)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")


# "shoprank": the bulk writer (features.materialize); "feast": Feast's own materialize.
WRITERS = ("shoprank", "feast")


def marker_path(workspace: Workspace) -> Path:
    """Written after each materialization; readers poll it to notice new data."""
    return workspace.repo_dir / "data" / "materialized.json"


def materialize(
    workspace: Workspace,
    start: datetime | None = None,
    end: datetime | None = None,
    incremental: bool = False,
    only: list[str] | None = None,
    writer: str = "shoprank",
    progress: bool = False,
    batch_rows: int | None = None,
) -> dict[str, int]:
    """Load the latest feature rows in [start, end) into the online store.

    Without a range, the whole offline store is loaded; `incremental` starts
    where the registry says the last materialization ended. The online store
    holds the latest row per entity, not the history. `only` names the views to
    load (default: every view with data). `writer` is "shoprank", the bulk path
    of features.materialize, or "feast", Feast's own materialize. Returns the
    entities written per feature view.
    """
    if writer not in WRITERS:
        raise ValueError(f"--writer {writer} is not one of {', '.join(WRITERS)}")
    candidates = {
        names.USER_VIEW: (workspace.user_features_path, names.USER_KEY),
        names.ITEM_VIEW: (workspace.item_features_path, names.ITEM_KEY),
        names.USER_EMBEDDING_VIEW: (workspace.user_embeddings_path, names.USER_KEY),
        names.ITEM_EMBEDDING_VIEW: (workspace.item_embeddings_path, names.ITEM_KEY),
        names.USER_HISTORY_VIEW: (workspace.user_history_path, names.USER_KEY),
        names.ITEM_TEXT_VIEW: (workspace.item_text_path, names.ITEM_KEY),
    }
    # Views whose tables have no file yet (embeddings before training) are skipped.
    tables = {
        v: t
        for v, t in candidates.items()
        if any(t[0].glob("*.parquet")) and (only is None or v in only)
    }
    if not tables:
        raise ValueError(
            f"no offline tables under {workspace.offline_dir}; "
            "run `shoprank features backfill` first"
        )
    low, high = _time_range([path for path, _ in tables.values()])
    end = end or high + timedelta(seconds=1)
    store = open_store(workspace)
    use_write_ahead_log(store)  # a store applied before WAL was used gets it here
    views = list(tables)
    if writer == "shoprank":
        from features.materialize import BATCH_ROWS, write_views

        # Each view from where it last ended (incremental) or from the range's start.
        ends = {v.name: v.most_recent_end_time for v in store.list_feature_views()}
        starts = {v: (ends.get(v) if incremental else None) or start or low for v in views}
        paths = {v: path for v, (path, _) in tables.items()}
        counts = write_views(
            store, paths, starts, end, progress, BATCH_ROWS if batch_rows is None else batch_rows
        )
        _write_marker(workspace, min(starts.values()), end, counts)
        return counts
    if incremental:
        start = _last_end(store) or low
        store.materialize_incremental(end_date=end, feature_views=views)
    else:
        start = start or low
        store.materialize(start_date=start, end_date=end, feature_views=views)
    counts = {
        view: _entities_in_range(path, key, start, end) for view, (path, key) in tables.items()
    }
    _write_marker(workspace, start, end, counts)
    return counts


def _last_end(store: FeatureStore) -> datetime | None:
    ends = [
        view.most_recent_end_time
        for view in store.list_feature_views()
        if view.most_recent_end_time is not None
    ]
    return min(ends) if ends else None


def _time_range(paths: list[Path]) -> tuple[datetime, datetime]:
    """The earliest and latest feature time of the tables, from each row group's
    statistics where the files have them (they do: pyarrow writes them), else read."""
    lows, highs = [], []
    for path in paths:
        for file in sorted(path.glob("*.parquet")):
            meta = pq.read_metadata(file)
            column = meta.schema.names.index("event_timestamp")
            for group in range(meta.num_row_groups):
                stats = meta.row_group(group).column(column).statistics
                if stats is None or not stats.has_min_max:
                    table = pq.read_table(file, columns=["event_timestamp"])
                    low, high = pc.min_max(table[0]).values()
                    lows.append(low.as_py())
                    highs.append(high.as_py())
                    break
                lows.append(_utc(stats.min))
                highs.append(_utc(stats.max))
    return min(lows), max(highs)


def _utc(moment: datetime) -> datetime:
    """Parquet statistics give the time naive; the column is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _entities_in_range(path: Path, key: str, start: datetime, end: datetime) -> int:
    table = pq.read_table(path, columns=[key, "event_timestamp"])
    ts = table["event_timestamp"]
    inside = pc.and_(pc.greater_equal(ts, start), pc.less(ts, end))
    return len(pc.unique(table.filter(inside)[key]))


def _write_marker(
    workspace: Workspace, start: datetime, end: datetime, counts: dict[str, int]
) -> None:
    body = {
        "materialized_at": datetime.now(UTC).isoformat(),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "counts": counts,
        # Monotonic across runs on one machine; readers compare it for change.
        "version": time.time_ns(),
    }
    path = marker_path(workspace)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=2))
    os.replace(tmp, path)
