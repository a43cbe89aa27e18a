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

from features.workspace import Workspace

if TYPE_CHECKING:  # feast takes seconds to import; only the commands that need it pay
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

REPO_TEMPLATE = Path(__file__).parent / "repo"
REPO_FILES = ("feature_store.yaml", "definitions.py")
FEATURE_SERVICE = "ranker_v1"


def install_repo(workspace: Workspace) -> None:
    """Copy the repo template into the workspace, where its relative paths resolve."""
    (workspace.repo_dir / "data").mkdir(parents=True, exist_ok=True)
    for name in REPO_FILES:
        shutil.copyfile(REPO_TEMPLATE / name, workspace.repo_dir / name)


def open_store(workspace: Workspace) -> FeatureStore:
    return connect(workspace.repo_dir)


def connect(repo_dir: Path) -> FeatureStore:
    """The repo's FeatureStore, refusing a feature_store.yaml whose variables are unset.

    Feast keeps an unset ${VAR} as literal text, and would take an unset
    registry for a file of that name: an empty registry, silently.
    """
    from feast import FeatureStore

    logging.getLogger("feast.repo_config").addFilter(_not_the_file_registry_warning)
    store = FeatureStore(repo_path=str(repo_dir))
    for key, value in (
        ("registry", store.config.registry_config),
        ("online_store", store.config.online_config),
    ):
        if isinstance(value, str) and value.startswith("${"):
            raise ValueError(
                f"{key} in {repo_dir / 'feature_store.yaml'} is {value}, which is not set: "
                "run through `shoprank`, or export it as that file's comments show"
            )
    return store


def _not_the_file_registry_warning(record: logging.LogRecord) -> bool:
    """Feast calls serve_features_while_materializing a no-op on a file registry,
    where it is what keeps readers going through a materialization."""
    return not record.getMessage().startswith("`serve_features_while_materializing` is enabled")


def definitions(repo_dir: Path) -> list[Any]:
    """The repo's objects, with file sources anchored at repo_dir.

    Feast's DuckDB offline store reads a FileSource path as given, relative to
    the working directory, so sources are registered with absolute paths.
    """
    # Run the repo's own file afresh: each call gets new objects to anchor.
    d = runpy.run_path(str(repo_dir / "definitions.py"))
    sources = ("user_source", "item_source", "user_embeddings_source", "item_embeddings_source")
    for source in (d[name] for name in sources):
        path = Path(source.file_options.uri)
        if not path.is_absolute():
            source.file_options.uri = str(repo_dir.resolve() / path)
    names = (
        "user",
        "item",
        "user_features",
        "item_features",
        "user_embeddings",
        "item_embeddings",
        "ranker_v1",
        "ranker_v2",
    )
    return [d[name] for name in names]


def apply(workspace: Workspace) -> list[str]:
    """Register the entities, feature views and services; returns their names."""
    install_repo(workspace)
    objects = definitions(workspace.repo_dir)
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


def marker_path(workspace: Workspace) -> Path:
    """Written after each materialization; readers poll it to notice new data."""
    return workspace.repo_dir / "data" / "materialized.json"


def materialize(
    workspace: Workspace,
    start: datetime | None = None,
    end: datetime | None = None,
    incremental: bool = False,
    only: list[str] | None = None,
) -> dict[str, int]:
    """Load the latest feature rows in [start, end) into the online store.

    Without a range, the whole offline store is loaded; `incremental` starts
    where the registry says the last materialization ended. Feast writes in
    batches per feature view and holds the latest row per entity, not the
    history. `only` names the views to load (default: every view with data).
    Returns the entities written per feature view.
    """
    candidates = {
        "user_features": (workspace.user_features_path, "user_id"),
        "item_features": (workspace.item_features_path, "item_id"),
        "user_embeddings": (workspace.user_embeddings_path, "user_id"),
        "item_embeddings": (workspace.item_embeddings_path, "item_id"),
    }
    # Views whose tables have no file yet (embeddings before training) are skipped.
    tables = {
        v: t
        for v, t in candidates.items()
        if any(t[0].glob("*.parquet")) and (only is None or v in only)
    }
    low, high = _time_range([path for path, _ in tables.values()])
    end = end or high + timedelta(seconds=1)
    store = open_store(workspace)
    use_write_ahead_log(store)  # a store applied before WAL was used gets it here
    views = list(tables)
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
    lows, highs = [], []
    for path in paths:
        low, high = pc.min_max(pq.read_table(path, columns=["event_timestamp"])[0]).values()
        lows.append(low.as_py())
        highs.append(high.as_py())
    return min(lows), max(highs)


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
