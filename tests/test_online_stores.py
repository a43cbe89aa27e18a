"""Feast on Redis, Redis Cluster and a shared PostgreSQL registry, all real.

Each workspace here is a copy of the session workspace (same data, offline
tables and model) applied and materialized afresh into other stores, so its
rankings must equal the SQLite server's exactly.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import psycopg
import pytest

from features import store
from features.workspace import Workspace
from server.cli import main
from server.config import FEAST_REGISTRY_VAR, FEAST_VARS, Settings, feast_environment
from server.feature_fetch import FeastFeatures
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc
from tests.services import missing_redis_binaries, postgres_database, redis_cluster, redis_server
from tests.support import ServerThread
from training import dataset
from training.evaluate import latest_rows

USER = "user_000001"
ITEMS = [*(f"item_{i:06d}" for i in range(0, 200, 7)), "no-such-item"]
Ranking = list[tuple[str, int, float]]


@contextmanager
def feast_env(stores: Settings) -> Iterator[None]:
    """The Feast variables `shoprank` would export for these settings, for this block only."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in feast_environment(stores).items():
            patch.setenv(key, value)
        yield


def copy_workspace(source: Workspace, home: Path) -> Workspace:
    """The source's data, offline tables and models; not its registry or online store."""
    target = Workspace(home)
    shutil.copytree(source.data_dir, target.data_dir)
    shutil.copytree(source.offline_dir, target.offline_dir)
    shutil.copytree(source.models_dir, target.models_dir)
    return target


def materialized_copy(source: Workspace, home: Path, stores: Settings) -> Workspace:
    workspace = copy_workspace(source, home)
    with feast_env(stores):
        store.apply(workspace)
        store.materialize(workspace)
    return workspace


def ranking(channel: grpc.Channel) -> Ranking:
    request = pb.RankRequest(user_id=USER, candidate_item_ids=ITEMS)
    pages = pb_grpc.RankerStub(channel).Rank(request, timeout=30)
    return [(i.item_id, i.rank, i.score) for page in pages for i in page.items]


@contextmanager
def serving(settings: Settings) -> Iterator[grpc.Channel]:
    """A real server over settings.home; the Feast variables stay set while it runs."""
    with feast_env(settings):
        server = ServerThread(settings)
        try:
            port = server.start()
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                yield channel
        finally:
            server.stop()


@pytest.fixture(scope="module")
def redis_binaries() -> None:
    missing = missing_redis_binaries()
    if missing:
        pytest.skip(f"{' and '.join(missing)} not on PATH (Debian: apt-get install redis-server)")


@pytest.fixture(scope="module")
def redis_url(redis_binaries: None) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as directory, redis_server(Path(directory)) as url:
        yield url


@pytest.fixture(scope="module")
def cluster_url(redis_binaries: None) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as directory, redis_cluster(Path(directory)) as url:
        yield url


@pytest.fixture
def registry_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="module", params=["redis", "redis_cluster"])
def on_redis(
    request: pytest.FixtureRequest, workspace: Workspace
) -> Iterator[tuple[Settings, Workspace]]:
    """A copy of the session workspace on Redis (db 0) or the cluster, file registry."""
    url = request.getfixturevalue("redis_url" if request.param == "redis" else "cluster_url")
    stores = Settings(online_store=request.param, redis=url)
    with tempfile.TemporaryDirectory() as home:
        yield stores, materialized_copy(workspace, Path(home), stores)


@pytest.fixture(scope="session")
def sqlite_ranking(channel: grpc.Channel) -> Ranking:
    return ranking(channel)


def test_online_values_equal_the_newest_offline_rows(on_redis: tuple[Settings, Workspace]) -> None:
    stores, workspace = on_redis
    users = latest_rows(str(workspace.user_features_path), "user_id")
    items = latest_rows(str(workspace.item_features_path), "item_id")
    features = FeastFeatures(workspace.repo_dir)
    with feast_env(stores):
        features.load()
    online_users = [features.user(user_id) for user_id in users.index]
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


def test_redis_user_reads_equal_the_sdk(on_redis: tuple[Settings, Workspace]) -> None:
    from server.user_reads import RedisUserReads
    from tests.test_user_reads import check_equal_to_the_sdk

    stores, workspace = on_redis
    features = FeastFeatures(workspace.repo_dir)
    with feast_env(stores):
        features.load()
        features.enable_embeddings()
        assert isinstance(features._user_reads, RedisUserReads)
        check_equal_to_the_sdk(features, workspace)


def test_a_server_on_redis_ranks_as_the_sqlite_server_does(
    on_redis: tuple[Settings, Workspace], server_settings: Settings, sqlite_ranking: Ranking
) -> None:
    stores, workspace = on_redis
    settings = replace(
        server_settings, home=workspace.home, online_store=stores.online_store, redis=stores.redis
    )
    with serving(settings) as channel:
        assert ranking(channel) == sqlite_ranking
    assert len(sqlite_ranking) == len(ITEMS)


def test_a_view_being_materialized_elsewhere_keeps_serving(
    on_redis: tuple[Settings, Workspace],
) -> None:
    """A materialization marks its views MATERIALIZING in the registry while it runs;
    a reader that refreshes its registry meanwhile must still get features."""
    from feast.feature_view import FeatureViewState

    stores, workspace = on_redis
    with feast_env(stores):
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
    for key in FEAST_VARS:  # main() exports these; the monkeypatch restores them after
        monkeypatch.setenv(key, os.environ[key])
    monkeypatch.setenv("SHOPRANK_ONLINE_STORE", "redis")
    monkeypatch.setenv("SHOPRANK_REDIS", f"{redis_url},db=1")
    monkeypatch.setenv("SHOPRANK_REGISTRY", registry_url)
    assert main(["features", "apply", "--home", str(home)]) == 0
    assert main(["features", "materialize", "--home", str(home)]) == 0

    copy = Workspace(home)
    stores = Settings(online_store="redis", redis=f"{redis_url},db=1", registry=registry_url)
    features = FeastFeatures(copy.repo_dir)
    with feast_env(stores):
        features.load()
    users = latest_rows(str(copy.user_features_path), "user_id").index
    items = latest_rows(str(copy.item_features_path), "item_id").index
    assert all(features.user(user_id).known for user_id in users)
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
    stores = Settings(online_store="redis", redis=f"{redis_url},db=2", registry=registry_url)
    job = materialized_copy(workspace, tmp_path / "job", stores)
    server_host = Workspace(tmp_path / "server")
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
    stores = Settings(online_store="redis", redis=f"{redis_url},db=3", registry=registry_url)
    copy = materialized_copy(workspace, tmp_path / "home", stores)
    with feast_env(stores):
        shared = dataset.build(copy)
    local = dataset.build(workspace)
    assert len(shared.labels) > 0
    np.testing.assert_array_equal(shared.features, local.features)
    np.testing.assert_array_equal(shared.labels, local.labels)
    np.testing.assert_array_equal(shared.users, local.users)


def test_an_unset_feast_variable_is_named_not_read_as_a_file(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(FEAST_REGISTRY_VAR)
    with pytest.raises(ValueError, match=r"registry in .* is \$\{SHOPRANK_FEAST_REGISTRY\}, which"):
        store.open_store(workspace)
    assert not list(workspace.repo_dir.glob("$*"))
