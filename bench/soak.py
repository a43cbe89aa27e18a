"""Soak: a server held at about 80% of its measured capacity for minutes.

    .venv/bin/python bench/soak.py [--home DIR] [--minutes 5] [--share 0.8]

It starts `shoprank serve` on the workspace (built like bench/serve.py's when
missing), measures capacity with a closed loop at concurrency 32 (the
baseline, in the same run), then runs an open loop at `share` of it: calls
start on schedule whatever the server does, and each is timed from when it
was meant to start. It reports the server's RSS (every process of it) after
warm-up and at the end, the p99 of each minute, and the errors.
Target: RSS growth <= 5%, and 0 errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from serve import SHOPRANK, build_workspace, requests_for, running  # noqa: E402

from features.workspace import Workspace  # noqa: E402
from server.clients.loadtest import command as loadtest  # noqa: E402
from server.clients.loadtest import scenario, workers  # noqa: E402
from server.clients.loadtest.generator import Load, Target  # noqa: E402
from server.clients.loadtest.record import Second  # noqa: E402
from server.processes import free_port  # noqa: E402

RSS_TARGET = 0.05


def tree_rss_bytes(roots: list[int]) -> int:
    """Resident memory of these processes and all their descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":", 1) for line in status.read_text().splitlines() if ":" in line
            )
        except OSError:
            continue
        pid = int(status.parent.name)
        parents[pid] = int(fields["PPid"].strip())
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
    tree, grown = set(roots), True
    while grown:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grown = bool(more)
    return sum(rss.get(pid, 0) for pid in tree)


def per_minute(seconds: list[Second]) -> list[dict[str, float]]:
    """Each minute's calls, errors and p99 (ms), its seconds' histograms merged exactly."""
    out = []
    for start in range(0, len(seconds), 60):
        merged = Second()
        for s in seconds[start : start + 60]:
            merged.add_json(s.to_json())
        count = merged.latency.get_total_count()
        out.append(
            {
                "minute": start // 60 + 1,
                "calls": merged.calls,
                "errors": merged.errors,
                "p99_ms": merged.latency.get_value_at_percentile(99) / 1e3 if count else 0.0,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=HERE / "out" / "home-sqlite")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--share", type=float, default=0.8, help="of the measured capacity")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "soak.json")
    args = parser.parse_args()
    env = dict(os.environ)
    if not (args.home / "models" / "CURRENT").exists():
        build_workspace(args.home, env, 2000, 5000)
    workspace = Workspace(args.home)
    requests = requests_for(workspace, 300, 100, seed=1)
    target = f"127.0.0.1:{free_port('127.0.0.1')}"
    serve = [*SHOPRANK, "serve", "--home", str(args.home), "--port", target.split(":")[1]]
    with running([serve], target, env) as servers:
        pids = [p.pid for p in servers]
        capacity = loadtest.measure(target, requests, 10.0, 32, warmup=2.0, connections=8)["rps"]
        rate = capacity * args.share
        rss_start = tree_rss_bytes(pids)
        load = Load(rps=rate, duration=args.minutes * 60, warmup=0.0, connections=8)
        pool = scenario.fixed_pool(requests, 5.0)
        outcome = workers.run(Target(target), load, [pool], workers.Progress(1, None))
        rss_end = tree_rss_bytes(pids)
    measured = outcome.measured
    result = {
        "capacity_qps": capacity,
        "rate_qps": rate,
        "minutes": per_minute(measured.seconds),
        "calls": measured.calls,
        "errors": measured.errors,
        "codes": dict(measured.codes),
        "rss_start_mib": rss_start / 2**20,
        "rss_end_mib": rss_end / 2**20,
        "rss_growth": rss_end / rss_start - 1,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"capacity (closed loop, c=32): {capacity:.0f} calls/s; soak at {rate:.0f} calls/s")
    for m in result["minutes"]:
        print(f"  minute {m['minute']:>2}: {m['calls']:>7} calls, {m['errors']} errors, "
              f"p99 {m['p99_ms']:.2f} ms")  # fmt: skip
    growth = result["rss_growth"]
    verdict = "ok" if growth <= RSS_TARGET and measured.errors == 0 else "MISSED"
    print(
        f"RSS {result['rss_start_mib']:.0f} -> {result['rss_end_mib']:.0f} MiB ({growth:+.1%}), "
        f"errors {measured.errors} of {measured.calls}: target <= +5% and 0 errors: {verdict}"
    )


if __name__ == "__main__":
    main()
