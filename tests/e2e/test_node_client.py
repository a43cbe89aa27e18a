"""Rank from Node.js (@grpc/grpc-js, @grpc/proto-loader) equals Rank from Python,
page for page and item for item, errors included."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest

from server.cli import main
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc

NODE_DIR = Path(__file__).resolve().parents[1] / "interop" / "node"
AGES = ("user_feature_age_seconds", "item_feature_age_seconds")
# The ages are measured at each call, so two calls a moment apart differ by that moment.
AGE_SLACK_SECONDS = 120.0

REQUESTS: list[dict[str, Any]] = [
    {"user_id": "user_000001", "candidate_item_ids": [f"item_{i:06d}" for i in range(0, 40, 4)],
     "page_size": 3, "explain": True},
    {"user_id": "user_000002", "candidate_item_ids": [f"item_{i:06d}" for i in range(30)],
     "top_k": 7, "page_size": 2},
    {"user_id": "nobody", "candidate_item_ids": ["item_000001", "no_such_item", "item_000003"],
     "explain": True},  # cold start and an unknown item: both flags
    {"user_id": "", "candidate_item_ids": ["item_000001"]},
    {"user_id": "user_000001", "candidate_item_ids": ["item_000001", ""]},
]  # fmt: skip


def python_results(channel: grpc.Channel) -> list[dict[str, Any]]:
    stub = pb_grpc.RankerStub(channel)
    out: list[dict[str, Any]] = []
    for fields in REQUESTS:
        try:
            pages = list(stub.Rank(pb.RankRequest(**fields), timeout=30))
        except grpc.RpcError as error:
            out.append({"error": {"code": error.code().name, "details": error.details()}})
            continue
        out.append({"pages": [page_dict(p) for p in pages]})
    return out


def page_dict(page: pb.RankResponse) -> dict[str, Any]:
    flag = pb.ScoreParts.Flag.Name
    items = []
    for it in page.items:
        parts = None
        if it.HasField("parts"):
            p = it.parts
            parts = {f.name: getattr(p, f.name) for f in p.DESCRIPTOR.fields if f.name != "flags"}
            parts["flags"] = [flag(f) for f in p.flags]
        items.append({"item_id": it.item_id, "rank": it.rank, "score": it.score, "parts": parts})
    return {"model_version": page.model_version, "items": items}


def without_ages(results: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[float]]:
    """The results with each feature age taken out, and those ages in order."""
    ages: list[float] = []
    copy = json.loads(json.dumps(results))
    for result in copy:
        for page in result.get("pages", []):
            for item in page["items"]:
                if item["parts"] is not None:
                    ages += [item["parts"].pop(key) for key in AGES]
    return copy, ages


def test_node_client_ranks_as_the_python_client_does(
    server_address: str, channel: grpc.Channel, tmp_path: Path
) -> None:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail(
            "Node.js and tests/interop/node's packages are needed: `make test` installs them"
        )
    assert main(["proto", "--out", str(tmp_path / "proto")]) == 0
    done = subprocess.run(
        [node, str(NODE_DIR / "rank.js"), server_address, str(tmp_path / "proto")],
        input=json.dumps(REQUESTS), capture_output=True, text=True, timeout=120, cwd=NODE_DIR,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    from_node = json.loads(done.stdout)
    from_python = python_results(channel)

    node_rest, node_ages = without_ages(from_node)
    python_rest, python_ages = without_ages(from_python)
    assert node_rest == python_rest  # every page, item, score bit and flag
    assert len(node_ages) == len(python_ages) > 0
    assert all(abs(a - b) <= AGE_SLACK_SECONDS for a, b in zip(node_ages, python_ages, strict=True))

    pages = [len(r["pages"]) for r in from_python[:3]]
    assert pages == [4, 4, 1]  # ten in threes, seven in twos, three in one page
    assert from_python[3:] == [
        {"error": {"code": "INVALID_ARGUMENT", "details": "user_id is required"}},
        {"error": {"code": "INVALID_ARGUMENT", "details": "candidate_item_ids[1] is empty"}},
    ]
    flags = {
        f for page in from_python[2]["pages"] for i in page["items"] for f in i["parts"]["flags"]
    }
    assert flags >= {"COLD_START_USER", "UNKNOWN_ITEM"}
