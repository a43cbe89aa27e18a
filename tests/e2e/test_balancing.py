"""Client-side balancing: `rank`, `eval` and `loadtest` spread calls over several
servers, given as IP:PORT,IP:PORT or a dns:/// name, with gRPC's round_robin."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from features.workspace import Workspace
from server.app import load
from server.config import Settings
from server.processes import free_port
from tests.e2e.test_loadtest import Metered, minus, shoprank
from tests.support import ServerThread


@pytest.fixture(scope="module")
def two(workspace: Workspace) -> Iterator[list[Metered]]:
    servers, metered = [], []
    for _ in range(2):
        settings = Settings(home=workspace.home, port=0, metrics_port=free_port("127.0.0.1"))
        server = ServerThread(settings, load(settings))
        port = server.start()
        servers.append(server)
        metered.append(Metered(f"127.0.0.1:{port}", settings.metrics_port or 0))
    yield metered
    for server in servers:
        server.stop()


def test_loadtest_over_two_addresses_sends_to_both_round_robin(
    two: list[Metered], workspace: Workspace, tmp_path: Path
) -> None:
    before = [m.codes() for m in two]
    out = tmp_path / "report.json"
    done = shoprank(
        "loadtest", "--server", ",".join(m.address for m in two), "--home", str(workspace.home),
        "--requests", "200", "--concurrency", "2", "--connections", "1", "--warmup", "0",
        "--quiet", "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    served = [minus(m.codes(), b).get("OK", 0) for m, b in zip(two, before, strict=True)]
    assert json.loads(out.read_text())["ok"] == 200
    assert sum(served) == 200
    assert min(served) >= 80, served  # round robin: about half each


def test_rank_takes_a_list_and_a_dns_name(two: list[Metered]) -> None:
    before = [m.codes() for m in two]
    listed = ",".join(m.address for m in two)
    port = two[0].address.split(":")[1]
    for server in (listed, f"dns:///localhost:{port}"):
        done = shoprank(
            "rank", "--server", server, "--user", "user_000001", "--candidates", "item_000001"
        )
        assert done.returncode == 0, done.stderr
        assert "item_000001" in done.stdout
    served = [minus(m.codes(), b).get("OK", 0) for m, b in zip(two, before, strict=True)]
    assert sum(served) == 2 and served[0] >= 1


def test_a_list_of_names_is_one_line_naming_dns() -> None:
    done = shoprank("rank", "--server", "ranker-a:1,ranker-b:2", "--user", "u", "--candidates", "a")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "shoprank rank: several servers must be given as IP:PORT ('ranker-a:1' is not); "
        "for a name, use dns:///NAME:PORT"
    ]
