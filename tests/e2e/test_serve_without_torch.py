"""Serving needs no torch: `shoprank serve` ranks with torch unimportable, and no
serving process maps libtorch, though the test venv has torch installed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc

from features.workspace import Workspace
from server.processes import free_port
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]


def mapped_libraries(pid: int) -> set[str]:
    lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {line.split()[-1] for line in lines if line.count(" ") >= 5 and "/" in line}


def children(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in found]


def test_serve_ranks_with_torch_unimportable_and_maps_no_libtorch(
    workspace: Workspace, tmp_path: Path
) -> None:
    blocker = tmp_path / "no_torch" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("torch is blocked by this test")\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker.parent), str(ROOT)])}
    port = free_port("127.0.0.1")
    command = [sys.executable, "-m", "server.cli", "serve", "--home", str(workspace.home),
               "--port", str(port), "--processes", "2"]  # fmt: skip
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        assert "serving on" in process.stdout.readline()
        request = pb.RankRequest(user_id="user_000001", candidate_item_ids=["item_000001", "x"])
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            pages = list(pb_grpc.RankerStub(channel).Rank(request, timeout=10))
        assert [item.item_id for item in pages[0].items] == ["item_000001", "x"]
        assert pages[0].model_version == "0001"  # the ONNX model, not the fallback
        workers = children(process.pid)
        assert workers
        for pid in [process.pid, *workers]:
            assert not [lib for lib in mapped_libraries(pid) if "libtorch" in lib], pid
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
