"""Replicas behind nginx: what a second replica adds and what nginx costs, on this machine.

    .venv/bin/python bench/cluster.py [--home DIR] [--duration 10] [--rounds 2]

Two `shoprank serve --processes 1` replicas on one workspace (bench/serve.py's,
built when missing) and Debian's nginx with deploy/nginx/shoprank.conf.template,
rendered as deploy/cluster.py renders it. The load generator runs closed loop at
concurrency 32 in this process. In alternating rounds it measures:
- one replica dialled directly (the baseline), with 100 and with 1000 candidates;
- nginx in front of one replica;
- nginx in front of two;
and prints QPS, p50/p99, and the CPU per call of the replicas and of nginx. The
CPU per call is what sizing needs: QPS per core = 1 / (server CPU per call).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from serve import SHOPRANK, build_workspace, requests_for, tree_cpu_seconds, wait_serving  # noqa: E402

from deploy.cluster import nginx_main_conf  # noqa: E402
from features.workspace import Workspace  # noqa: E402
from server.clients.loadtest import command as loadtest  # noqa: E402
from server.processes import free_port  # noqa: E402

CONCURRENCY = 32


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def measured(target: str, requests: list, seconds: float, pids: dict[str, list[int]]) -> dict:
    """One closed-loop run; QPS, latency, and CPU seconds per call of each process group."""
    before = {name: tree_cpu_seconds(group) for name, group in pids.items()}
    body = loadtest.measure(target, requests, seconds, CONCURRENCY, warmup=1.0, connections=4)
    after = {name: tree_cpu_seconds(group) for name, group in pids.items()}
    figures = loadtest.brief(body)
    calls = max(1.0, figures["calls"] + body.get("warmup", {}).get("count", 0))
    for name in pids:
        figures[f"{name}_cpu_ms_per_call"] = (after[name] - before[name]) / calls * 1e3
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=HERE / "out" / "home-sqlite")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "cluster.json")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if not (args.home / "models" / "CURRENT").exists():
        build_workspace(args.home, env, 2000, 5000)
    workspace = Workspace(args.home)
    hundred = requests_for(workspace, 300, 100, seed=1)
    thousand = requests_for(workspace, 300, 1000, seed=2)
    ports = [free_port("127.0.0.1") for _ in range(2)]
    replicas = [f"127.0.0.1:{port}" for port in ports]
    serve = [[*SHOPRANK, "serve", "--home", str(args.home), "--port", str(p), "--processes", "1"]
             for p in ports]  # fmt: skip
    servers = [start(command, env) for command in serve]
    nginx: dict[int, tuple[str, subprocess.Popen[bytes]]] = {}
    prefix = Path(tempfile.mkdtemp(prefix="shoprank-nginx-"))
    try:
        for address, process in zip(replicas, servers, strict=True):
            wait_serving(address, process)
        for count in (1, 2):
            listen = f"127.0.0.1:{free_port('127.0.0.1')}"
            conf = nginx_main_conf(prefix / str(count), listen, replicas[:count])
            command = ["nginx", "-c", str(conf), "-g", "daemon off;"]
            nginx[count] = (listen, subprocess.Popen(command, stdin=subprocess.DEVNULL))
            wait_serving(listen, nginx[count][1])
        one, two = [servers[0].pid], [servers[0].pid, servers[1].pid]
        cases = {
            "direct, 1 replica, 100 cand": (replicas[0], hundred, {"replicas": one}),
            "direct, 1 replica, 1000 cand": (replicas[0], thousand, {"replicas": one}),
            "nginx -> 1 replica, 100 cand": (
                nginx[1][0], hundred, {"replicas": one, "nginx": [nginx[1][1].pid]}
            ),
            "nginx -> 2 replicas, 100 cand": (
                nginx[2][0], hundred, {"replicas": two, "nginx": [nginx[2][1].pid]}
            ),
        }  # fmt: skip
        results: dict[str, list[dict]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, (target, requests, pids) in cases.items():
                results[name].append(measured(target, requests, args.duration, pids))
                time.sleep(1.0)
    finally:
        for _, process in nginx.values():
            process.terminate()
        for process in servers:
            process.terminate()
        for process in [*servers, *(p for _, p in nginx.values())]:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
    summary = {name: _median(runs) for name, runs in results.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rounds": results, "median": summary}, indent=2))
    print(f"closed loop, c={CONCURRENCY}, load generator in this process; 2 cores shared; "
          f"median of {args.rounds} alternating rounds of {args.duration:g}s")  # fmt: skip
    header = (
        f"{'case':<32} {'QPS':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'replica CPU/call':>17} {'nginx CPU/call':>15}"
    )
    print(header)
    print("-" * len(header))
    for name, s in summary.items():
        nginx_cpu = f"{s['nginx_cpu_ms_per_call']:.3f} ms" if "nginx_cpu_ms_per_call" in s else ""
        print(f"{name:<32} {s['qps']:>7.0f} {s['p50_ms']:>7.2f} {s['p99_ms']:>7.2f} "
              f"{s['replicas_cpu_ms_per_call']:>14.3f} ms {nginx_cpu:>15}")  # fmt: skip
    base = summary["direct, 1 replica, 100 cand"]["qps"]
    for name in ("nginx -> 1 replica, 100 cand", "nginx -> 2 replicas, 100 cand"):
        print(f"ratio {name} / direct 1 replica QPS = {summary[name]['qps'] / base:.3f}")
    for name in ("direct, 1 replica, 100 cand", "direct, 1 replica, 1000 cand"):
        cpu = summary[name]["replicas_cpu_ms_per_call"]
        print(f"QPS per core of replica CPU, {name.split(', ')[-1]}: {1e3 / cpu:.0f}")


def _median(runs: list[dict]) -> dict:
    keys = runs[0].keys()
    return {k: sorted(r[k] for r in runs)[len(runs) // 2] for k in keys}


if __name__ == "__main__":
    main()
