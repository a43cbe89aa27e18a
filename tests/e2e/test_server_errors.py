"""Every failure has a defined answer: a status code, or a refusal to start."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import numpy as np
import pytest

from features.rows import ItemRows, UserRow
from features.workspace import Workspace
from server.app import Loaded, load
from server.config import Settings
from server.errors import StartupError
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc
from server.ranking.build import build_pipeline
from tests.support import ServerThread

Flag = pb.ScoreParts.Flag


@pytest.fixture
def copied(workspace: Workspace, tmp_path: Path) -> Workspace:
    shutil.copytree(workspace.home, tmp_path / "home")
    return Workspace(tmp_path / "home")


def _drop_feature_from_model(copy: Workspace, ref: str) -> None:
    path = copy.models_dir / "0001" / "ranker.json"
    metadata = json.loads(path.read_text())
    metadata["feast_features"].remove(ref)
    path.write_text(json.dumps(metadata))


def test_a_model_that_does_not_match_the_feature_service_refuses_to_start(
    copied: Workspace,
) -> None:
    _drop_feature_from_model(copied, "item_features:item_price")
    with pytest.raises(StartupError, match=r"item_features:item_price"):
        load(Settings(home=copied.home, port=0))


def test_serve_exits_with_one_line_naming_the_mismatch(copied: Workspace) -> None:
    _drop_feature_from_model(copied, "user_features:user_bias")
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--home", str(copied.home), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "does not match FeatureService 'ranker_v2'" in lines[0]
    assert "user_features:user_bias" in lines[0]


def test_without_a_model_the_server_ranks_by_similarity_times_bias(copied: Workspace) -> None:
    shutil.rmtree(copied.models_dir)
    server = ServerThread(Settings(home=copied.home, port=0))
    port = server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            request = pb.RankRequest(
                user_id="user_000001",
                candidate_item_ids=["item_000000", "item_000004"],
                explain=True,
            )
            pages = list(pb_grpc.RankerStub(channel).Rank(request, timeout=30))
    finally:
        server.stop()
    assert pages[0].model_version == "heuristic"
    for item in pages[0].items:
        assert item.score == item.parts.heuristic_score
        assert list(item.parts.flags) == [Flag.HEURISTIC]


def test_a_missing_online_store_refuses_to_start(copied: Workspace) -> None:
    (copied.repo_dir / "data" / "online_store.db").unlink()
    with pytest.raises(StartupError, match="cannot load the item cache: feature store read failed"):
        load(Settings(home=copied.home, port=0))


@pytest.mark.parametrize("on_failure", ["degrade", "fail"])
def test_an_online_store_failing_mid_flight_degrades_or_gets_unavailable(
    copied: Workspace, on_failure: str
) -> None:
    server = ServerThread(Settings(home=copied.home, port=0, on_store_failure=on_failure))
    port = server.start()
    with sqlite3.connect(copied.repo_dir / "data" / "online_store.db") as db:
        db.execute("DROP TABLE shoprank_user_features")
    request = pb.RankRequest(user_id="user_000001", candidate_item_ids=["item_000000"])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.RankerStub(channel)
            if on_failure == "degrade":
                pages = list(stub.Rank(request, timeout=30))
            else:
                with pytest.raises(grpc.RpcError) as raised:
                    list(stub.Rank(request, timeout=30))
    finally:
        server.stop()
    if on_failure == "degrade":  # never read before: cold start by bias, flagged
        assert list(pages[0].flags) == [Flag.DEGRADED]
        assert [item.item_id for item in pages[0].items] == ["item_000000"]
        return
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "feature store read failed" in raised.value.details()


class SlowFeatures:
    """A fake feature source that takes `delay` seconds: for the servicer's limits."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.entered = threading.Event()
        self.release = threading.Event()

    async def user(self, user_id: str) -> UserRow:
        self.entered.set()
        deadline = time.monotonic() + self.delay
        while not self.release.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # as a slow store read, awaited: the loop stays free
        return UserRow(np.ones(2, np.float32), 0.5, 1.0, True, time.time())

    def items(self, item_ids: Sequence[str]) -> ItemRows:
        n = len(item_ids)
        return ItemRows(
            np.ones((n, 2), np.float32),
            np.full(n, 0.5, np.float32),
            np.zeros(n, np.float32),
            np.zeros(n, np.float32),
            np.ones(n, bool),
            np.full(n, time.time()),
        )


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[tuple[grpc.Channel, SlowFeatures]]:
    features = SlowFeatures(delay=5.0)
    settings = Settings(home=tmp_path, port=0, max_in_flight=1)
    server = ServerThread(settings, Loaded(build_pipeline(features, None), features))
    port = server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel, features
    features.release.set()
    server.stop()


def test_a_call_past_its_deadline_gets_deadline_exceeded(
    slow_server: tuple[grpc.Channel, SlowFeatures],
) -> None:
    channel, _ = slow_server
    request = pb.RankRequest(user_id="u", candidate_item_ids=["a"])
    with pytest.raises(grpc.RpcError) as raised:
        list(pb_grpc.RankerStub(channel).Rank(request, timeout=0.3))
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_calls_over_the_in_flight_limit_are_shed(
    slow_server: tuple[grpc.Channel, SlowFeatures],
) -> None:
    channel, features = slow_server
    stub = pb_grpc.RankerStub(channel)
    request = pb.RankRequest(user_id="u", candidate_item_ids=["a"])
    first: list[str] = []
    holder = threading.Thread(
        target=lambda: first.extend(
            i.item_id for page in stub.Rank(request, timeout=30) for i in page.items
        )
    )
    holder.start()
    assert features.entered.wait(10), "the first call never reached the pipeline"
    with pytest.raises(grpc.RpcError) as raised:
        list(stub.Rank(request, timeout=30))
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit of 1 concurrent rankings" in raised.value.details()
    features.release.set()
    holder.join(timeout=10)
    assert first == ["a"]
