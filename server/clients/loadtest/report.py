"""The report of a load test: one JSON document, which the summary, the charts
and `loadtest compare` all read. It keeps the HDR histograms themselves, so
reports can be merged or re-read at any percentile later."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from server.clients.loadtest.generator import Load, Target
from server.clients.loadtest.record import Recording, encode
from server.clients.loadtest.scenario import Scenario
from server.clients.loadtest.workers import Outcome

FORMAT = "shoprank-loadtest/1"
PERCENTILES = (10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9)
HISTOGRAM_BINS = 10  # as ghz prints
# Past this share of its time on a CPU, or this late to wake, the loop delays
# the calls it times: its latencies then include its own queueing.
SATURATED = 0.9
SATURATED_LAG_MS = 5.0


def percentile_key(p: float) -> str:
    return f"p{p:g}"


def percentiles(h: HdrHistogram) -> dict[str, float]:
    return {percentile_key(p): _ms(h.get_value_at_percentile(p)) for p in PERCENTILES}


def _ms(us: float) -> float:
    return round(us / 1e3, 4)


def bins(h: HdrHistogram, count: int = HISTOGRAM_BINS) -> list[dict[str, float]]:
    """`count` equal-width bins from the fastest call to the slowest; each mark
    is its bin's upper edge, as ghz prints them."""
    if not h.get_total_count():
        return []
    low, high = h.get_min_value(), h.get_max_value()
    width = max((high - low) / count, 1e-9)
    counts = [0] * count
    for item in h.get_recorded_iterator():
        index = min(int((item.value_iterated_to - low) / width), count - 1)
        counts[index] += item.count_at_value_iterated_to
    total = h.get_total_count()
    return [
        {"mark_ms": _ms(low + width * (i + 1)), "count": c, "share": round(c / total, 6)}
        for i, c in enumerate(counts)
    ]


def build(
    target: Target, load: Load, scenario: Scenario, outcome: Outcome, started: datetime
) -> dict[str, Any]:
    m = outcome.measured
    lat = m.latency
    ok = lat.get_total_count()
    cpu_share = m.cpu_seconds / max(m.elapsed, 1e-9)
    lag_p99 = _ms(m.loop_lag.get_value_at_percentile(99)) if m.loop_lag.get_total_count() else 0.0
    cores = os.cpu_count() or 1
    return {
        "format": FORMAT,
        "target": target.address,
        "tls": target.access.tls is not None,
        "started_at": started.isoformat(),
        "load": {
            "mode": load.mode,
            "concurrency": load.concurrency if load.mode == "closed" else 0,
            "rps": load.rps,
            "duration_s": load.duration,
            "requests": load.requests,
            "warmup_s": load.warmup,
            "connections": load.connections,
            "workers": m.workers,
        },
        "scenario": scenario.to_json(),
        "count": m.calls,
        "ok": m.codes.get("OK", 0),
        "errors": m.errors,
        "total_ms": round(m.elapsed * 1e3, 3),
        "rps": round(m.calls / max(m.elapsed, 1e-9), 3),
        "fastest_ms": _ms(lat.get_min_value()) if ok else 0.0,
        "slowest_ms": _ms(lat.get_max_value()) if ok else 0.0,
        "average_ms": _ms(lat.get_mean_value()) if ok else 0.0,
        "stdev_ms": _ms(lat.get_stddev()) if ok else 0.0,
        "latency_ms": percentiles(lat),
        "first_page_ms": percentiles(m.first_page),
        "histogram": bins(lat),
        "status_codes": dict(sorted(m.codes.items())),
        "kinds": {k: dict(sorted(v.items())) for k, v in sorted(m.kinds.items())},
        "error_details": [
            {"code": code, "details": detail, "count": n}
            for (code, detail), n in m.details.most_common()
        ],
        "timeline": timeline(m),
        "warmup": {
            "count": outcome.warmup.calls,
            "status_codes": dict(sorted(outcome.warmup.codes.items())),
        },
        "client": {
            "workers": m.workers,
            "cpu_ms_per_call": round(m.cpu_seconds / max(m.calls, 1) * 1e3, 4),
            "cpu_cores": round(cpu_share, 3),
            "loop_busy": round(m.loop_busy, 3),
            "loop_lag_p99_ms": lag_p99,
            "saturated": m.loop_busy >= SATURATED
            or lag_p99 >= SATURATED_LAG_MS
            or cpu_share >= SATURATED * cores,
            "machine_cores": cores,
        },
        "hdr": {"latency": encode(lat), "first_page": encode(m.first_page)},
    }


def timeline(m: Recording) -> list[dict[str, float]]:
    out = []
    for i, s in enumerate(m.seconds):
        has = s.latency.get_total_count() > 0
        out.append(
            {
                "second": i,
                "calls": s.calls,
                "errors": s.errors,
                "p50_ms": _ms(s.latency.get_value_at_percentile(50)) if has else 0.0,
                "p99_ms": _ms(s.latency.get_value_at_percentile(99)) if has else 0.0,
            }
        )
    return out


def now() -> datetime:
    return datetime.now(UTC)


def write(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2) + "\n")


def read(path: Path) -> dict[str, Any]:
    """A report written by `loadtest --json`; ValueError in one line otherwise."""
    try:
        body = json.loads(path.read_text())
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not JSON: {error}") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise ValueError(f"{path} is not a `shoprank loadtest --json` report ({FORMAT})")
    return body
