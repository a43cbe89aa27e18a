"""The two load-test commands, put together from the parts: `loadtest` and
`loadtest compare`."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from features.workspace import Workspace
from server.clients.channels import Access, Tls
from server.clients.loadtest import compare as comparing
from server.clients.loadtest import report, scenario, summary, workers
from server.clients.loadtest.generator import Load, Target


@dataclass(frozen=True)
class Outputs:
    json: Path | None = None
    html: Path | None = None
    png: Path | None = None


def loadtest(
    address: str,
    workspace: Workspace,
    scenario_path: Path | None,
    load: Load,
    worker_count: int,
    outputs: Outputs,
    out: TextIO,
    progress: TextIO | None,
    candidates: int | None = None,
    top_k: int | None = None,
    tls: Tls | None = None,
    token: str = "",
) -> dict[str, Any]:
    """Run the load, print the summary to `out`, write the outputs; the report.
    `tls` and `token`, from the command line, win over the scenario's."""
    if outputs.html or outputs.png:
        import matplotlib  # noqa: F401  # fail before the run, not after it
    plan = scenario.load(scenario_path) if scenario_path else scenario.Scenario()
    if candidates is not None:
        plan = replace(plan, candidates=(scenario.Weighted(candidates, 1.0),))
    if top_k is not None:
        plan = replace(plan, top_k=top_k)
    if tls is not None:
        plan = replace(plan, tls=tls)
    target = Target(address, Access(plan.tls, token or plan.token(dict(os.environ))))
    population = scenario.read_population(workspace.events_path, workspace.catalog_path)
    pools = [scenario.build_pool(plan, population, stream) for stream in range(worker_count)]
    started = report.now()
    outcome = workers.run(target, load, pools, workers.Progress(worker_count, progress))
    body = report.build(target, load, plan, outcome, started)
    print(summary.text(body), file=out, flush=True)
    if outputs.json:
        report.write(body, outputs.json)
    if outputs.png or outputs.html:
        from server.clients.loadtest import charts

        if outputs.png:
            charts.write_pngs(body, outputs.png)
        if outputs.html:
            charts.write_html(body, outputs.html)
    return body


def compare(a: Path, b: Path, threshold: float, error_points: float, out: TextIO) -> bool:
    """Print the comparison; True when B regressed against A."""
    first, second = report.read(a), report.read(b)
    for note in comparing.differences(first, second):
        print(f"note: the runs differ: {note}", file=out)
    rows = comparing.compare(first, second, threshold, error_points)
    print(comparing.table(rows, threshold, error_points), file=out)
    regressed = [r for r in rows if r.regressed]
    for r in regressed:
        print(f"regression: {r.metric} {r.change} ({a.name} -> {b.name})", file=out)
    return bool(regressed)


def measure(
    address: str,
    requests: list[Any],
    duration: float,
    concurrency: int = 1,
    warmup: float = 1.0,
    connections: int = 1,
    deadline_s: float = 10.0,
) -> dict[str, Any]:
    """Given requests (cycled, in order) in a closed loop in this process, for a
    benchmark that builds its own: the report, quietly."""
    load = Load(concurrency=concurrency, duration=duration, warmup=warmup, connections=connections)
    target = Target(address)
    started = report.now()
    pool = scenario.fixed_pool(requests, deadline_s)
    outcome = workers.run(target, load, [pool], workers.Progress(1, None))
    return report.build(target, load, scenario.Scenario(), outcome, started)


def brief(body: dict[str, Any]) -> dict[str, float]:
    """The figures a benchmark table quotes."""
    return {
        "calls": body["count"],
        "errors": body["errors"],
        "seconds": body["total_ms"] / 1e3,
        "qps": body["rps"],
        "p50_ms": body["latency_ms"]["p50"],
        "p90_ms": body["latency_ms"]["p90"],
        "p99_ms": body["latency_ms"]["p99"],
        "max_ms": body["slowest_ms"],
    }
