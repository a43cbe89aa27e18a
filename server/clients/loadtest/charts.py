"""Latency over time and the latency histogram, as matplotlib PNGs, and an HTML
page that carries both beside the summary. Needs matplotlib (the load extra)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from server.clients.loadtest.record import decode_into, histogram
from server.clients.loadtest.summary import text

OVER_TIME = "latency-over-time.png"
HISTOGRAM = "latency-histogram.png"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no screen
    import matplotlib.pyplot as plt

    return plt


def over_time(report: dict[str, Any]) -> bytes:
    plt = _pyplot()
    seconds = [t["second"] + 1 for t in report["timeline"]]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(seconds, [t["p50_ms"] for t in report["timeline"]], label="p50")
    ax.plot(seconds, [t["p99_ms"] for t in report["timeline"]], label="p99")
    ax.set_xlabel("second of the run")
    ax.set_ylabel("latency, ms (OK calls)")
    ax.set_ylim(bottom=0)
    calls = ax.twinx()
    calls.bar(seconds, [t["calls"] for t in report["timeline"]], alpha=0.15, color="grey")
    calls.set_ylabel("calls completed")
    ax.legend(loc="upper left")
    ax.set_title(f"shoprank loadtest: {report['target']}")
    return _png(plt, fig)


def latency_histogram(report: dict[str, Any]) -> bytes:
    plt = _pyplot()
    h = histogram()
    decode_into(h, report["hdr"]["latency"])
    values = [item.value_iterated_to / 1e3 for item in h.get_recorded_iterator()]
    weights = [item.count_at_value_iterated_to for item in h.get_recorded_iterator()]
    fig, ax = plt.subplots(figsize=(8, 4))
    if values:
        ax.hist(values, bins=50, weights=weights)
        for key in ("p50", "p99"):
            mark = report["latency_ms"][key]
            ax.axvline(mark, color="black", linestyle="--", linewidth=0.8)
            ax.annotate(key, (mark, ax.get_ylim()[1] * 0.9))
    ax.set_xlabel("latency to the last page, ms (OK calls)")
    ax.set_ylabel("calls")
    return _png(plt, fig)


def _png(plt: Any, fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def write_pngs(report: dict[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / OVER_TIME, directory / HISTOGRAM]
    paths[0].write_bytes(over_time(report))
    paths[1].write_bytes(latency_histogram(report))
    return paths


def write_html(report: dict[str, Any], path: Path) -> None:
    """One self-contained page: the summary and both charts inline."""
    images = "".join(
        f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        for alt, png in (
            ("latency over time", over_time(report)),
            ("latency histogram", latency_histogram(report)),
        )
    )
    path.write_text(
        "<!doctype html><meta charset=utf-8><title>shoprank loadtest</title>"
        f"<h1>shoprank loadtest, {html.escape(report['started_at'])}</h1>"
        f"{images}<pre>{html.escape(text(report))}</pre>\n"
    )
