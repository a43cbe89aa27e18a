"""Hot model swaps on a real server under load: promote, reject, roll back."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from features import names
from features.workspace import Workspace
from server.app import load
from server.config import Settings
from server.processes import free_port
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc
from tests.support import ServerThread
from training import registry

POLL = 0.2
REQUEST = pb.RankRequest(
    user_id="user_000001", candidate_item_ids=[f"item_{i:06d}" for i in range(30)], top_k=5
)


def publish_copy(models: Path, of: str, spoil: str = "") -> str:
    """A new version made from an old one's files, spoiled on purpose if asked."""
    staging = models.parent / f"staging-{time.monotonic_ns()}"
    shutil.copytree(models / of, staging)
    if spoil == "truncated":
        onnx = staging / registry.MODEL_FILE
        onnx.write_bytes(onnx.read_bytes()[:200])
    elif spoil == "mismatched":
        meta = staging / registry.METADATA_FILE
        body = json.loads(meta.read_text())
        body["feast_features"] = [*body["feast_features"], "user_features:no_such_feature"]
        meta.write_text(json.dumps(body))
    return registry.publish(models, staging, make_current=False)


class Load:
    """Rank calls in a loop on a thread: every outcome and version, counted."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._stub = pb_grpc.RankerStub(channel)
        self.outcomes: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                pages = list(self._stub.Rank(REQUEST, timeout=10))
                self.outcomes[pages[0].model_version] += 1
            except grpc.RpcError as error:
                self.outcomes[error.code().name] += 1

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=20)


@pytest.fixture
def served(workspace: Workspace, tmp_path: Path) -> Iterator[tuple[Workspace, grpc.Channel, str]]:
    """A copy of the workspace (its registry is changed here), a server on it,
    and that server's metrics URL."""
    home = tmp_path / "home"
    shutil.copytree(workspace.home, home)
    copy = Workspace(home)
    metrics = free_port("127.0.0.1")
    settings = Settings(home=home, port=0, model_poll_seconds=POLL, metrics_port=metrics)
    server = ServerThread(settings, load(settings))
    port = server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield copy, channel, f"http://127.0.0.1:{metrics}/metrics"
    server.stop()


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def info(channel: grpc.Channel) -> pb.ServingInfo:
    return pb_grpc.RankerStub(channel).GetServingInfo(pb.GetServingInfoRequest(), timeout=10)


def wait_for(channel: grpc.Channel, version: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while info(channel).model_version != version:
        assert time.monotonic() < deadline, f"{version} not served within {seconds}s"
        time.sleep(POLL / 2)


def test_promote_reject_and_roll_back_under_load(
    served: tuple[Workspace, grpc.Channel, str],
) -> None:
    workspace, channel, metrics = served
    models = workspace.models_dir
    first = registry.current_version(models)
    assert first is not None
    started = time.time()
    second = publish_copy(models, first)
    truncated = publish_copy(models, first, spoil="truncated")
    mismatched = publish_copy(models, first, spoil="mismatched")

    with Load(channel) as load_:
        time.sleep(0.3)
        registry.promote(models, second)
        wait_for(channel, second)
        swapped = info(channel)
        assert swapped.model_loaded_at >= started
        for spoiled in (truncated, mismatched):
            registry.promote(models, spoiled)
            time.sleep(5 * POLL)  # several polls: each sees it and leaves it rejected
            assert info(channel).model_version == second
            assert f'shoprank_model_rejected_total{{version="{spoiled}"}} 1.0' in scrape(metrics)
        assert f'shoprank_model_info{{version="{second}"}} 1.0' in scrape(metrics)
        assert registry.rollback(models) == truncated  # the history, one step back
        assert registry.rollback(models) == second
        assert registry.rollback(models) == first
        wait_for(channel, first)
        time.sleep(0.3)

    # No call failed across three swaps and two rejections, and both versions served.
    print(f"\nthree swaps and two rejections under load, calls by version: {dict(load_.outcomes)}")
    assert set(load_.outcomes) == {first, second}, load_.outcomes
    assert min(load_.outcomes.values()) > 0
    with pytest.raises(ValueError, match="no earlier version to roll back to"):
        registry.rollback(models)


def test_serving_info_reports_the_model_and_the_features(
    served: tuple[Workspace, grpc.Channel, str],
) -> None:
    workspace, channel, _ = served
    got = info(channel)
    assert got.model_version == registry.current_version(workspace.models_dir)
    assert got.feature_service in (names.RANKER_SERVICE, names.EMBEDDING_RANKER_SERVICE)
    assert got.cached_items == 200  # the test catalogue, all of it
    assert 0 <= got.cache_age_seconds < 600
    assert got.last_materialization > 0
    assert got.model_loaded_at > 0


def test_an_unreadable_registry_delays_a_swap_rejects_nothing_and_fails_no_call(
    served: tuple[Workspace, grpc.Channel, str], caplog: pytest.LogCaptureFixture
) -> None:
    workspace, channel, metrics = served
    models = workspace.models_dir
    first = registry.current_version(models)
    assert first is not None
    second = publish_copy(models, first)
    registry_file = workspace.repo_dir / "data" / "registry.db"
    away = registry_file.with_name("registry.away")
    with Load(channel) as load_:
        time.sleep(0.3)
        registry_file.rename(away)  # as a registry that is unreachable, or mid-apply
        registry.promote(models, second)
        time.sleep(5 * POLL)  # several polls: each finds the registry unreadable
        assert info(channel).model_version == first
        away.rename(registry_file)
        wait_for(channel, second)
        time.sleep(0.3)
    print(
        f"\nregistry unreadable for {5 * POLL:g}s under load, calls by version: "
        f"{dict(load_.outcomes)}"
    )
    assert set(load_.outcomes) == {first, second}, load_.outcomes
    assert "shoprank_model_rejected_total{" not in scrape(metrics)
    retried = [r.message for r in caplog.records if "not checked yet" in r.message]
    assert retried and "cannot read the feature registry" in retried[0]
