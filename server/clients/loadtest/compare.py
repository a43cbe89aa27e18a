"""`shoprank loadtest compare A.json B.json`: B (the candidate) against A (the
baseline), metric by metric, with a verdict a CI job can gate on.

A regression is B worse than A by more than the threshold: p50 or p99 up by over
`threshold` percent, QPS down by over `threshold` percent, or the error rate up
by over `error_points` percentage points. The default of 10% sits below a real
slowdown worth stopping for and above the run-to-run noise of a quiet runner;
on a shared, noisy machine (these vary by 15-30% between runs) pass 30.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_THRESHOLD = 10.0  # percent
DEFAULT_ERROR_POINTS = 0.1  # percentage points of the error rate


@dataclass(frozen=True)
class Row:
    metric: str
    a: float
    b: float
    change: str
    verdict: str  # better, same or REGRESSION

    @property
    def regressed(self) -> bool:
        return self.verdict == "REGRESSION"


def compare(
    a: dict[str, Any],
    b: dict[str, Any],
    threshold: float = DEFAULT_THRESHOLD,
    error_points: float = DEFAULT_ERROR_POINTS,
) -> list[Row]:
    rows = [
        _relative("p50 ms", a["latency_ms"]["p50"], b["latency_ms"]["p50"], threshold, True),
        _relative("p99 ms", a["latency_ms"]["p99"], b["latency_ms"]["p99"], threshold, True),
        _relative("QPS", a["rps"], b["rps"], threshold, False),
    ]
    rate_a, rate_b = _error_rate(a), _error_rate(b)
    points = rate_b - rate_a
    verdict = "REGRESSION" if points > error_points else "better" if points < 0 else "same"
    rows.append(Row("errors %", rate_a, rate_b, f"{points:+.2f} pp", verdict))
    return rows


def _error_rate(report: dict[str, Any]) -> float:
    return 100.0 * report["errors"] / report["count"] if report["count"] else 0.0


def _relative(name: str, a: float, b: float, threshold: float, lower_is_better: bool) -> Row:
    change = (b - a) / a * 100 if a else (0.0 if b == a else float("inf"))
    worse = change if lower_is_better else -change
    if worse > threshold:
        verdict = "REGRESSION"
    elif worse < -threshold:
        verdict = "better"
    else:
        verdict = "same"
    return Row(name, a, b, f"{change:+.1f}%", verdict)


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """How the two runs' loads differ: a comparison across loads may mislead."""
    out = []
    for key in ("mode", "concurrency", "rps", "workers"):
        if a["load"].get(key) != b["load"].get(key):
            out.append(f"{key} {a['load'].get(key)} vs {b['load'].get(key)}")
    if a.get("scenario") != b.get("scenario"):
        out.append("the scenarios differ")
    return out


def table(rows: list[Row], threshold: float, error_points: float) -> str:
    lines = [f"{'metric':<10} {'A':>12} {'B':>12} {'change':>10}  verdict"]
    for r in rows:
        lines.append(f"{r.metric:<10} {r.a:>12.3f} {r.b:>12.3f} {r.change:>10}  {r.verdict}")
    lines.append(
        f"threshold: {threshold:g}% on p50, p99 and QPS; {error_points:g} points on errors"
    )
    return "\n".join(lines)
