"""Real Redis, Redis Cluster and copies of the session workspace on them, shared
by the integration modules. Each server is started on free ports for the session
and stopped when it ends."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from features.workspace import Stores, Workspace
from tests.services import missing_redis_binaries, redis_cluster, redis_server
from tests.support import materialized_copy


@pytest.fixture(scope="session")
def redis_binaries() -> None:
    missing = missing_redis_binaries()
    if missing:
        pytest.skip(f"{' and '.join(missing)} not on PATH (Debian: apt-get install redis-server)")


@pytest.fixture(scope="session")
def redis_url(redis_binaries: None) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as directory, redis_server(Path(directory)) as url:
        yield url


@pytest.fixture(scope="session")
def cluster_url(redis_binaries: None) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as directory, redis_cluster(Path(directory)) as url:
        yield url


def _materialized_on(
    kind: str, url: str, workspace: Workspace
) -> Iterator[tuple[Stores, Workspace]]:
    """A copy of the session workspace on Redis (db 0) or the cluster, file registry."""
    stores = Stores(online_store=kind, redis=url)
    with tempfile.TemporaryDirectory() as home:
        yield stores, materialized_copy(workspace, Path(home), stores)


@pytest.fixture(scope="session")
def on_redis_redis(redis_url: str, workspace: Workspace) -> Iterator[tuple[Stores, Workspace]]:
    yield from _materialized_on("redis", redis_url, workspace)


@pytest.fixture(scope="session")
def on_redis_redis_cluster(
    cluster_url: str, workspace: Workspace
) -> Iterator[tuple[Stores, Workspace]]:
    yield from _materialized_on("redis_cluster", cluster_url, workspace)


@pytest.fixture(scope="session", params=["redis", "redis_cluster"])
def on_redis(request: pytest.FixtureRequest) -> tuple[Stores, Workspace]:
    found: tuple[Stores, Workspace] = request.getfixturevalue("on_redis_" + request.param)
    return found
