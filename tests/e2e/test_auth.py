"""Bearer tokens and request limits on a real server: one interceptor, health open."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from features.workspace import Workspace
from server.app import load
from server.config import Settings
from server.processes import free_port
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc
from server.transport.auth import RECHECK_SECONDS, UNAUTHENTICATED
from tests.support import ServerThread

ROOT = Path(__file__).resolve().parents[2]
REQUEST = pb.RankRequest(user_id="user_000001", candidate_item_ids=["item_000001", "item_000002"])


@dataclass
class Guarded:
    address: str
    tokens: Path
    metrics_url: str
    channel: grpc.Channel


@pytest.fixture(scope="module")
def guarded(workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    tokens = tmp_path_factory.mktemp("auth") / "tokens"
    tokens.write_text("# one token per line\nalpha-token\n\nbeta-token\n")
    settings = Settings(
        home=workspace.home,
        port=0,
        auth_tokens=str(tokens),
        metrics_port=free_port("127.0.0.1"),
        max_request_bytes=64 * 1024,
        max_metadata_bytes=4 * 1024,
    )
    server = ServerThread(settings, load(settings))
    address = f"127.0.0.1:{server.start()}"
    with grpc.insecure_channel(address) as channel:
        yield Guarded(address, tokens, f"http://127.0.0.1:{settings.metrics_port}/metrics", channel)
    server.stop()


def call(channel: grpc.Channel, token: str | None, request: pb.RankRequest = REQUEST) -> str:
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else None
    try:
        list(pb_grpc.RankerStub(channel).Rank(request, timeout=30, metadata=metadata))
    except grpc.RpcError as error:
        assert error.code() != grpc.StatusCode.INTERNAL
        return f"{error.code().name}: {error.details()}"
    return "OK"


def test_a_listed_token_passes_and_anything_else_is_unauthenticated(guarded: Guarded) -> None:
    refused = f"UNAUTHENTICATED: {UNAUTHENTICATED}"
    assert call(guarded.channel, "alpha-token") == "OK"
    assert call(guarded.channel, "beta-token") == "OK"
    assert call(guarded.channel, None) == refused
    assert call(guarded.channel, "alpha-tokenX") == refused
    assert call(guarded.channel, "") == refused
    raw = (("authorization", "Basic alpha-token"),)  # the right secret, the wrong scheme
    with pytest.raises(grpc.RpcError) as caught:
        list(pb_grpc.RankerStub(guarded.channel).Rank(REQUEST, timeout=30, metadata=raw))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with urllib.request.urlopen(guarded.metrics_url, timeout=10) as response:
        text = response.read().decode()
    assert 'shoprank_auth_denied_total{method="/shoprank.v1.Ranker/Rank"}' in text


def test_health_stays_open_and_reflection_does_not(guarded: Guarded) -> None:
    health = health_pb2_grpc.HealthStub(guarded.channel)
    answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(guarded.channel)
    asked = iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    with pytest.raises(grpc.RpcError) as caught:
        list(reflection.ServerReflectionInfo(asked, timeout=10))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    asked = iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    metadata = (("authorization", "Bearer alpha-token"),)
    answers = list(reflection.ServerReflectionInfo(asked, timeout=10, metadata=metadata))
    names = {s.name for s in answers[0].list_services_response.service}
    assert "shoprank.v1.Ranker" in names


def test_a_rotated_token_file_is_read_again_and_a_broken_one_is_not(guarded: Guarded) -> None:
    original = guarded.tokens.read_text()
    try:
        guarded.tokens.write_text("gamma-token\n")
        time.sleep(RECHECK_SECONDS + 0.2)
        call(guarded.channel, "gamma-token")  # the first call after the interval re-reads
        assert call(guarded.channel, "gamma-token") == "OK"
        assert call(guarded.channel, "alpha-token").startswith("UNAUTHENTICATED")
        guarded.tokens.write_text("\n# emptied by a bad deploy\n")
        time.sleep(RECHECK_SECONDS + 0.2)
        assert call(guarded.channel, "gamma-token") == "OK"  # the last good tokens hold
    finally:
        guarded.tokens.write_text(original)
        time.sleep(RECHECK_SECONDS + 0.2)
        call(guarded.channel, "alpha-token")


def test_oversized_requests_and_metadata_are_refused_not_crashed(guarded: Guarded) -> None:
    big = pb.RankRequest(user_id="user_000001", candidate_item_ids=["item_000001"] * 8000)
    assert big.ByteSize() > 64 * 1024
    assert call(guarded.channel, "alpha-token", big).startswith("RESOURCE_EXHAUSTED")
    metadata = (("authorization", "Bearer alpha-token"), ("x-padding", "p" * 8192))
    with pytest.raises(grpc.RpcError) as caught:
        list(pb_grpc.RankerStub(guarded.channel).Rank(REQUEST, timeout=30, metadata=metadata))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert call(guarded.channel, "alpha-token") == "OK"  # and the server serves on


def test_the_clients_send_their_token(guarded: Guarded, workspace: Workspace) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOAD_TOKEN": "beta-token"}

    def shoprank(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "server.cli", *args],
            env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    ranked = shoprank(
        "rank", "--server", guarded.address, "--user", "user_000001",
        "--candidates", "item_000001,item_000002", "--token", "alpha-token",
    )  # fmt: skip
    assert ranked.returncode == 0, ranked.stderr
    assert "item_000001" in ranked.stdout
    refused = shoprank(
        "rank", "--server", guarded.address, "--user", "user_000001", "--candidates", "item_000001"
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr.strip() == f"shoprank rank: UNAUTHENTICATED: {UNAUTHENTICATED}"
    scenario = Path(workspace.home) / "token-scenario.yaml"
    scenario.write_text("candidates: 5\ntop_k: 3\ntoken_env: LOAD_TOKEN\n")
    out = Path(workspace.home) / "token-report.json"
    loaded = shoprank(
        "loadtest", "--server", guarded.address, "--home", str(workspace.home),
        "--scenario", str(scenario), "--requests", "30", "--warmup", "0", "--quiet",
        "--json", str(out),
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(out.read_text())["status_codes"] == {"OK": 30}
