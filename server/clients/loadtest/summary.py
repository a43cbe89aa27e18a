"""The report as text, in the shape ghz prints, plus what ghz does not show:
time to the first page, outcomes by kind of call, and the client's own CPU."""

from __future__ import annotations

from typing import Any

from server.clients.loadtest.report import PERCENTILES, percentile_key

BAR = "∎"
BAR_WIDTH = 40


def text(report: dict[str, Any]) -> str:
    load = report["load"]
    pace = (
        f"open loop at {load['rps']:g} calls/s"
        if load["mode"] == "open"
        else f"closed loop, {load['concurrency']} in flight"
    )
    lines = [
        f"Target: {report['target']}{' (TLS)' if report['tls'] else ''}, {pace}, "
        f"{load['workers']} worker(s), {load['connections']} connection(s)",
        "",
        "Summary:",
        f"  Count:\t{report['count']}",
        f"  Total:\t{report['total_ms']:.2f} ms",
        f"  Slowest:\t{report['slowest_ms']:.2f} ms",
        f"  Fastest:\t{report['fastest_ms']:.2f} ms",
        f"  Average:\t{report['average_ms']:.2f} ms",
        f"  Requests/sec:\t{report['rps']:.2f}",
        "",
        "Response time histogram (OK calls, to the last page):",
    ]
    most = max((b["count"] for b in report["histogram"]), default=0)
    for b in report["histogram"]:
        bar = BAR * round(BAR_WIDTH * b["count"] / most) if most else ""
        lines.append(f"  {b['mark_ms']:.3f} [{b['count']}]\t|{bar}")
    lines += ["", "Latency distribution (to the last page | to the first page):"]
    for p in PERCENTILES:
        key = percentile_key(p)
        lines.append(
            f"  {p:g} % in {report['latency_ms'][key]:.2f} ms | "
            f"{report['first_page_ms'][key]:.2f} ms"
        )
    lines += ["", "Status code distribution:"]
    for code, count in report["status_codes"].items():
        lines.append(f"  [{code}]\t{count} responses")
    if report["error_details"]:
        lines += ["", "Error distribution:"]
        for e in report["error_details"]:
            lines.append(f"  [{e['count']}]\tcode = {e['code']} desc = {e['details']}")
    if len(report["kinds"]) > 1:
        lines += ["", "By kind of call:"]
        for kind, codes in report["kinds"].items():
            parts = ", ".join(f"{code} {n}" for code, n in codes.items())
            lines.append(f"  {kind}:\t{parts}")
    client = report["client"]
    warm = report["warmup"]
    lines += [
        "",
        f"Warm-up (not counted above): {warm['count']} calls",
        f"Client: {client['cpu_ms_per_call']:.3f} ms CPU per call, "
        f"{client['cpu_cores']:.2f} of {client['machine_cores']} cores, "
        f"busiest event loop {client['loop_busy']:.0%} busy, "
        f"p99 {client['loop_lag_p99_ms']:.2f} ms late to wake",
    ]
    if client["saturated"]:
        lines.append(
            "WARNING: the load generator's own CPU is saturated: its latencies include "
            "its own queueing. Add --workers, or run it on another machine."
        )
    return "\n".join(lines)
