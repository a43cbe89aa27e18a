"""`shoprank loadtest` against a real server: its counts against the server's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from features.workspace import Workspace
from server.app import load
from server.config import Settings
from server.processes import free_port
from tests.support import ServerThread

ROOT = Path(__file__).resolve().parents[2]


class Metered:
    def __init__(self, address: str, metrics_port: int) -> None:
        self.address = address
        self._url = f"http://127.0.0.1:{metrics_port}/metrics"

    def codes(self) -> dict[str, int]:
        """shoprank_rank_requests_total by code, and under "started" the calls
        gRPC core received: the server's own counts."""
        with urllib.request.urlopen(self._url, timeout=10) as response:
            text = response.read().decode()
        out: dict[str, int] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "shoprank_rank_requests_total":
                    out[sample.labels["code"]] = int(sample.value)
                elif sample.name == "shoprank_grpc_server_calls_started_total":
                    out["started"] = int(sample.value)
        return out


@pytest.fixture(scope="module")
def metered(workspace: Workspace) -> Iterator[Metered]:
    settings = Settings(home=workspace.home, port=0, metrics_port=free_port("127.0.0.1"))
    server = ServerThread(settings, load(settings))
    port = server.start()
    yield Metered(f"127.0.0.1:{port}", settings.metrics_port or 0)
    server.stop()


def shoprank(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def minus(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


# The whole catalogue, 200 items, in pages of one: 200 messages, about 9 ms of
# the server's time, twice what a 5 ms deadline allows, so a short-deadline call
# ends DEADLINE_EXCEEDED, never OK by a race. One call in flight keeps the client
# idle, so each call is on the wire at once: one whose deadline passed in the
# client before it was sent would never reach the server to be counted.
FORCED = """
users: {skew: 1.2}
candidates: 200
top_k: 0
page_size: 1
explain_share: 0.2
deadlines_ms:
  - {value: 20000, weight: 3}
  - {value: 5, weight: 1}
invalid_share: 0.1
seed: 5
"""


def test_counts_and_forced_outcomes_equal_what_the_server_counted(
    metered: Metered, workspace: Workspace, tmp_path: Path
) -> None:
    scenario = tmp_path / "forced.yaml"
    scenario.write_text(FORCED)
    out = tmp_path / "report.json"
    before = metered.codes()
    done = shoprank(
        "loadtest", "--server", metered.address, "--home", str(workspace.home),
        "--scenario", str(scenario), "--concurrency", "1", "--duration", "3",
        "--warmup", "0.5", "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    server = minus(metered.codes(), before)
    report = json.loads(out.read_text())

    client = dict(report["status_codes"])
    for code, n in report["warmup"]["status_codes"].items():
        client[code] = client.get(code, 0) + n
    assert "INTERNAL" not in server  # a write past the deadline is the deadline, not a bug
    started = server.pop("started")
    assert started == report["count"] + report["warmup"]["count"]
    assert server.get("OK", 0) == client["OK"]
    assert server.get("INVALID_ARGUMENT", 0) == client["INVALID_ARGUMENT"]
    # A call whose deadline passed ends DEADLINE_EXCEEDED in the servicer, or
    # CANCELLED when the client's timer fired first and reset the stream; or gRPC
    # dropped it before the servicer ran, seen only in the calls started.
    dropped = started - sum(server.values())
    ended = server.get("DEADLINE_EXCEEDED", 0) + server.get("CANCELLED", 0) + dropped
    assert ended == client["DEADLINE_EXCEEDED"], (server, client)
    assert set(client) == {"OK", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED"}

    # Every forced outcome is the one forced, and nothing else failed.
    kinds = report["kinds"]
    assert set(kinds) == {"rank", "invalid"}
    assert set(kinds["invalid"]) == {"INVALID_ARGUMENT"}
    assert set(kinds["rank"]) == {"OK", "DEADLINE_EXCEEDED"}
    assert report["errors"] == report["count"] - report["ok"]
    assert report["ok"] == sum(b["count"] for b in report["histogram"])
    assert sum(t["calls"] for t in report["timeline"]) == report["count"]
    messages = {e["details"] for e in report["error_details"] if e["code"] == "INVALID_ARGUMENT"}
    assert "user_id is required" in messages  # the server's own words, counted
    assert "Status code distribution:" in done.stdout
    assert "[DEADLINE_EXCEEDED]" in done.stdout


def test_a_counted_run_over_two_workers_sends_exactly_that_many(
    metered: Metered, workspace: Workspace, tmp_path: Path
) -> None:
    out = tmp_path / "report.json"
    before = metered.codes()
    done = shoprank(
        "loadtest", "--server", metered.address, "--home", str(workspace.home),
        "--workers", "2", "--concurrency", "4", "--requests", "301", "--warmup", "0",
        "--candidates", "20", "--top-k", "5", "--json", str(out), "--png", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["count"] == 301
    assert report["status_codes"] == {"OK": 301}
    assert report["load"]["workers"] == 2
    assert minus(metered.codes(), before) == {"OK": 301, "started": 301}
    # Live progress: one line a second, on stderr.
    assert "requests" in done.stderr and "p99" in done.stderr
    for png in ("latency-over-time.png", "latency-histogram.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_open_loop_run_starts_its_calls_at_the_rate(
    metered: Metered, workspace: Workspace, tmp_path: Path
) -> None:
    out = tmp_path / "report.json"
    html = tmp_path / "report.html"
    done = shoprank(
        "loadtest", "--server", metered.address, "--home", str(workspace.home),
        "--rps", "100", "--requests", "150", "--warmup", "0", "--candidates", "10",
        "--json", str(out), "--html", str(html), "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["count"] == 150
    assert report["load"]["mode"] == "open"
    assert report["total_ms"] >= 1490  # the 150th call starts at 1.49 s, whatever the server does
    assert done.stderr == ""  # --quiet
    assert html.read_text().count("data:image/png;base64,") == 2


def test_compare_gates_on_a_regression(tmp_path: Path) -> None:
    from tests.fakes import report_with

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(report_with(p50=4.0, p99=10.0, rps=500.0)))
    b.write_text(json.dumps(report_with(p50=4.1, p99=13.0, rps=495.0)))
    done = shoprank("loadtest", "compare", str(a), str(b))
    assert done.returncode == 1
    assert "p99 ms" in done.stdout and "REGRESSION" in done.stdout
    assert done.stderr.strip() == (
        f"shoprank loadtest compare: {b} regressed against {a}; see the table above"
    )
    assert shoprank("loadtest", "compare", str(a), str(b), "--threshold", "40").returncode == 0


def test_bad_scenarios_and_loads_are_one_line_each(workspace: Workspace, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("candidate: 10\n")
    home = ["--home", str(workspace.home), "--server", "127.0.0.1:1"]
    done = shoprank("loadtest", *home, "--scenario", str(bad))
    assert done.returncode == 1
    assert done.stderr.startswith(f"shoprank loadtest: {bad}: unknown key 'candidate'; known:")
    assert len(done.stderr.strip().splitlines()) == 1
    done = shoprank("loadtest", *home, "--concurrency", "1", "--workers", "2")
    assert done.stderr.strip() == (
        "shoprank loadtest: concurrency 1 cannot be spread over 2 workers"
    )
    done = shoprank("loadtest", "compare", str(bad), str(bad))
    assert done.stderr.strip() == (
        f"shoprank loadtest compare: {bad} is not JSON: Expecting value: line 1 column 1 (char 0)"
    )


def test_locust_drives_rank_headless(
    metered: Metered, workspace: Workspace, tmp_path: Path
) -> None:
    scenario = tmp_path / "locust.yaml"
    scenario.write_text("candidates: 30\ntop_k: 10\ninvalid_share: 0.1\nseed: 2\n")
    before = metered.codes()
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "locust"),
            "-f", str(ROOT / "bench" / "locustfile.py"),
            "--host", metered.address, "--shoprank-home", str(workspace.home),
            "--shoprank-scenario", str(scenario),
            "--headless", "-u", "3", "-r", "3", "-t", "3s", "--json", "--loglevel", "WARNING",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=120, stdin=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip
    stats = {row["name"]: row for row in json.loads(done.stdout)}
    server = minus(metered.codes(), before)
    valid, invalid = stats["Rank/rank"], stats["Rank/invalid"]
    assert valid["num_requests"] > 0 and valid["num_failures"] == 0
    # Locust fails exactly the calls made invalid on purpose, and says so in its exit code.
    assert invalid["num_requests"] == invalid["num_failures"] > 0
    assert done.returncode == 1
    # The server saw every call Locust reported, and the one call per user at
    # most that Locust abandoned when its time ran out: gRPC may drop such a
    # call before Rank reads it, or Rank may still be finishing it.
    assert server.get("OK", 0) >= valid["num_requests"]
    assert server.get("INVALID_ARGUMENT", 0) >= invalid["num_requests"]
    started = server.pop("started")
    reported = valid["num_requests"] + invalid["num_requests"]
    assert reported <= started <= reported + 3


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mtls"])
def test_loadtest_over_tls_and_mutual_tls(
    workspace: Workspace, tmp_path: Path, mutual: bool
) -> None:
    from tests import certs

    made = certs.make(tmp_path)
    settings = Settings(
        home=workspace.home,
        port=0,
        tls_cert=str(made.server.cert),
        tls_key=str(made.server.key),
        tls_client_ca=str(made.ca) if mutual else "",
    )
    server = ServerThread(settings, load(settings))
    address = f"127.0.0.1:{server.start()}"
    # The trusted caller's TLS comes from the command line, the others' from a scenario.
    flags = ["--tls-ca", str(made.ca), "--tls-server-name", certs.SERVER_NAME]
    if mutual:
        flags += ["--tls-cert", str(made.client.cert), "--tls-key", str(made.client.key)]
    try:
        runs = {}
        for name, tls, extra in (
            ("trusted", "null", flags),
            ("no client cert", f"{{ca: {made.ca}, server_name: {certs.SERVER_NAME}}}", []),
            ("plaintext", "null", []),
        ):
            path = tmp_path / f"{name}.yaml"
            path.write_text(f"candidates: 10\ntop_k: 5\ndeadlines_ms: 5000\ntls: {tls}\n")
            out = tmp_path / f"{name}.json"
            done = shoprank(
                "loadtest", "--server", address, "--home", str(workspace.home),
                "--scenario", str(path), "--requests", "20", "--warmup", "0",
                "--concurrency", "2", "--connections", "1", "--json", str(out), "--quiet",
                *extra,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            runs[name] = json.loads(out.read_text())
    finally:
        server.stop()
    assert runs["trusted"]["status_codes"] == {"OK": 20}
    assert runs["trusted"]["tls"] is True
    # A plaintext caller never gets through; under mTLS, neither does one without a certificate.
    assert runs["plaintext"]["status_codes"] == {"UNAVAILABLE": 20}
    expected = {"UNAVAILABLE": 20} if mutual else {"OK": 20}
    assert runs["no client cert"]["status_codes"] == expected
