"""Feast on Redis, Redis Cluster and a shared PostgreSQL registry, all real.

Each workspace here is a copy of the session workspace (same data, offline
tables and model) applied and materialized afresh into other stores, so its
rankings must equal the SQLite server's exactly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import psycopg
import pytest

from features import store
from features.workspace import Stores, Workspace
from server.cli import main
from server.config import Settings
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc
from server.sources.feast_provider import FeastFeatures
from tests.services import postgres_database
from tests.support import ServerThread, copy_workspace, materialized_copy
from training import dataset
from training.evaluate import latest_rows

USER = "user_000001"
ITEMS = [*(f"item_{i:06d}" for i in range(0, 200, 7)), "no-such-item"]
Ranking = list[tuple[str, int, float]]


def ranking(channel: grpc.Channel) -> Ranking:
    request = pb.RankRequest(user_id=USER, candidate_item_ids=ITEMS)
    pages = pb_grpc.RankerStub(channel).Rank(request, timeout=30)
    return [(i.item_id, i.rank, i.score) for page in pages for i in page.items]


@contextmanager
def serving(settings: Settings) -> Iterator[grpc.Channel]:
    """A real server over settings.home, on the stores the settings name."""
    server = ServerThread(settings)
    try:
        port = server.start()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        server.stop()


@pytest.fixture
def registry_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_ranking(channel: grpc.Channel) -> Ranking:
    return ranking(channel)


def test_online_values_equal_the_newest_offline_rows(on_redis: tuple[Stores, Workspace]) -> None:
    _, workspace = on_redis
    users = latest_rows(str(workspace.user_features_path), "user_id")
    items = latest_rows(str(workspace.item_features_path), "item_id")
    features = FeastFeatures(workspace)
    features.load()
    online_users = [features.users([user_id])[0] for user_id in users.index]
    assert all(u.known for u in online_users)
    np.testing.assert_array_equal(
        np.stack([u.vector for u in online_users]),
        np.stack(users["user_vector"]).astype(np.float32),
    )
    assert [u.bias for u in online_users] == users["user_bias"].astype(np.float32).tolist()
    assert [u.activity for u in online_users] == users["user_activity"].astype(np.float32).tolist()
    assert [u.timestamp for u in online_users] == [t.timestamp() for t in users["event_timestamp"]]
    fetched = features.items([*items.index, "no-such-item"])
    assert fetched.known.tolist() == [True] * len(items) + [False]
    np.testing.assert_array_equal(
        fetched.vectors[:-1], np.stack(items["item_vector"]).astype(np.float32)
    )
    for column in ("item_bias", "item_conversion", "item_price"):
        expected = items[column].to_numpy(np.float32)
        np.testing.assert_array_equal(getattr(fetched, column.removeprefix("item_"))[:-1], expected)


def test_redis_user_reads_equal_the_sdk(on_redis: tuple[Stores, Workspace]) -> None:
    from server.sources.user_reads import RedisUserReads
    from tests.integration.test_user_reads import check_equal_to_the_sdk

    _, workspace = on_redis
    features = FeastFeatures(workspace)
    features.load()
    features.enable_embeddings()
    assert isinstance(features._user_reads, RedisUserReads)
    check_equal_to_the_sdk(features, workspace)


def test_a_server_on_redis_ranks_as_the_sqlite_server_does(
    on_redis: tuple[Stores, Workspace], server_settings: Settings, sqlite_ranking: Ranking
) -> None:
    stores, workspace = on_redis
    settings = replace(
        server_settings, home=workspace.home, online_store=stores.online_store, redis=stores.redis
    )
    with serving(settings) as channel:
        assert ranking(channel) == sqlite_ranking
    assert len(sqlite_ranking) == len(ITEMS)


def test_a_view_being_materialized_elsewhere_keeps_serving(
    on_redis: tuple[Stores, Workspace],
) -> None:
    """A materialization marks its views MATERIALIZING in the registry while it runs;
    a reader that refreshes its registry meanwhile must still get features."""
    from feast.feature_view import FeatureViewState

    _, workspace = on_redis
    reader, writer = store.open_store(workspace), store.open_store(workspace)
    view = writer.get_feature_view("user_features")
    view.state = FeatureViewState.MATERIALIZING
    writer.registry.apply_feature_view(view, writer.project, commit=True)
    try:
        reader.refresh_registry()
        assert reader.get_feature_view("user_features").state == view.state
        response = reader.get_online_features(
            features=["user_features:user_bias"], entity_rows=[{"user_id": USER}]
        )
        assert response.to_dict()["user_bias"][0] is not None
    finally:
        view.state = FeatureViewState.AVAILABLE_ONLINE
        writer.registry.apply_feature_view(view, writer.project, commit=True)


def test_the_cli_applies_and_materializes_into_redis_with_a_sql_registry(
    workspace: Workspace,
    redis_url: str,
    registry_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    home = copy_workspace(workspace, tmp_path / "home").home
    monkeypatch.setenv("SHOPRANK_ONLINE_STORE", "redis")
    monkeypatch.setenv("SHOPRANK_REDIS", f"{redis_url},db=1")
    monkeypatch.setenv("SHOPRANK_REGISTRY", registry_url)
    assert main(["features", "apply", "--home", str(home)]) == 0
    assert main(["features", "materialize", "--home", str(home)]) == 0

    stores = Stores(online_store="redis", redis=f"{redis_url},db=1", registry=registry_url)
    copy = Workspace(home, stores)
    features = FeastFeatures(copy)
    features.load()
    users = latest_rows(str(copy.user_features_path), "user_id").index
    items = latest_rows(str(copy.item_features_path), "item_id").index
    assert all(features.users([user_id])[0].known for user_id in users)
    assert features.items(list(items)).known.all()
    with psycopg.connect(registry_url.replace("+psycopg", "")) as db:
        views = {name for (name,) in db.execute("SELECT feature_view_name FROM feature_views")}
    assert {"user_features", "item_features"} <= views
    assert not (copy.repo_dir / "data" / "registry.db").exists()


def test_servers_on_other_hosts_share_the_sql_registry(
    workspace: Workspace,
    redis_url: str,
    registry_url: str,
    server_settings: Settings,
    sqlite_ranking: Ranking,
    tmp_path: Path,
) -> None:
    """A job applies and materializes in one workspace; a server whose workspace
    holds only the repo file and the model serves from the shared registry."""
    stores = Stores(online_store="redis", redis=f"{redis_url},db=2", registry=registry_url)
    job = materialized_copy(workspace, tmp_path / "job", stores)
    server_host = Workspace(tmp_path / "server", stores)
    store.install_repo(server_host)
    shutil.copytree(workspace.models_dir, server_host.models_dir)
    for home in (job.home, server_host.home):
        settings = replace(
            server_settings,
            home=home,
            online_store=stores.online_store,
            redis=stores.redis,
            registry=stores.registry,
        )
        with serving(settings) as channel:
            assert ranking(channel) == sqlite_ranking, home


def test_training_sets_through_the_sql_registry_equal_the_file_registrys(
    workspace: Workspace, redis_url: str, registry_url: str, tmp_path: Path
) -> None:
    stores = Stores(online_store="redis", redis=f"{redis_url},db=3", registry=registry_url)
    copy = materialized_copy(workspace, tmp_path / "home", stores)
    shared = dataset.build(copy)
    local = dataset.build(workspace)
    assert len(shared.labels) > 0
    np.testing.assert_array_equal(shared.features, local.features)
    np.testing.assert_array_equal(shared.labels, local.labels)
    np.testing.assert_array_equal(shared.users, local.users)


def test_the_plain_feast_cli_sees_the_shared_stores_with_no_variables_set(
    workspace: Workspace, redis_url: str, registry_url: str, tmp_path: Path
) -> None:
    """`features apply` writes the resolved stores into the workspace's yaml: the data
    team's own `feast -c <home>/feature_repo ...` reads the SQL registry, not an empty file."""
    stores = Stores(online_store="redis", redis=f"{redis_url},db=4", registry=registry_url)
    copy = materialized_copy(workspace, tmp_path / "home", stores)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPRANK_")}
    feast = Path(sys.executable).with_name("feast")
    listed = subprocess.run(
        [str(feast), "-c", str(copy.repo_dir), "feature-views", "list"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert {"user_features", "item_features"} <= set(listed.stdout.split())
    assert not (copy.repo_dir / "data" / "registry.db").exists()
    assert not list(copy.repo_dir.glob("$*"))
