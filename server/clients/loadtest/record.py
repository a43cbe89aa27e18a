"""What a load test observed, in HDR histograms that merge exactly across workers.

Latencies are recorded in microseconds, 1 us to 60 s, at 3 significant digits
(0.1% resolution). Only OK calls go into the latency histograms; every call is
counted by its status code and kind. A second's worth of latencies is also kept
at 2 digits, for the latency-over-time chart and the live p99.
"""

from __future__ import annotations

import base64
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 60_000_000
DIGITS = 3
SECOND_DIGITS = 2  # per-second histograms: 100 of them cost what 10 full ones do
# Distinct error messages kept; a message naming an id would otherwise grow without bound.
MAX_DETAILS = 20


def histogram(digits: int = DIGITS) -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, digits)


def encode(h: HdrHistogram) -> str:
    return base64.b64encode(h.encode()).decode() if h.get_total_count() else ""


def decode_into(h: HdrHistogram, text: str) -> None:
    if text:
        h.decode_and_add(base64.b64decode(text))


def format_us(us: float) -> str:
    """A latency for people: '843 us', '12.40 ms', '1.25 s'."""
    if us < 1000:
        return f"{us:.0f} us"
    if us < 1_000_000:
        return f"{us / 1e3:.2f} ms"
    return f"{us / 1e6:.2f} s"


def _us(seconds: float) -> int:
    return min(max(int(seconds * 1e6), LOWEST_US), HIGHEST_US)


@dataclass
class Second:
    calls: int = 0
    errors: int = 0
    latency: HdrHistogram = field(default_factory=lambda: histogram(SECOND_DIGITS))

    def to_json(self) -> dict[str, Any]:
        return {"calls": self.calls, "errors": self.errors, "hdr": encode(self.latency)}

    def add_json(self, body: dict[str, Any]) -> None:
        self.calls += body["calls"]
        self.errors += body["errors"]
        decode_into(self.latency, body["hdr"])


@dataclass
class Recording:
    """One phase's observations: the warm-up's or the measured run's."""

    latency: HdrHistogram = field(default_factory=histogram)  # to the last page, OK calls
    first_page: HdrHistogram = field(default_factory=histogram)  # to the first page
    loop_lag: HdrHistogram = field(default_factory=lambda: histogram(SECOND_DIGITS))
    codes: Counter[str] = field(default_factory=Counter)
    kinds: dict[str, Counter[str]] = field(default_factory=dict)
    details: Counter[tuple[str, str]] = field(default_factory=Counter)  # errors: (code, message)
    seconds: list[Second] = field(default_factory=list)  # by second since the phase began
    elapsed: float = 0.0  # wall seconds the phase ran
    cpu_seconds: float = 0.0  # the process's CPU over the phase
    loop_busy: float = 0.0  # the share of the phase the event loop thread was on a CPU
    workers: int = 1

    @property
    def calls(self) -> int:
        return sum(self.codes.values())

    @property
    def errors(self) -> int:
        return self.calls - self.codes.get("OK", 0)

    def record(
        self,
        kind: str,
        code: str,
        second: int,
        last: float,
        first: float | None,
        detail: str = "",
    ) -> None:
        self.codes[code] += 1
        self.kinds.setdefault(kind, Counter())[code] += 1
        self.pad(second + 1)
        bucket = self.seconds[second]
        bucket.calls += 1
        if code != "OK":
            bucket.errors += 1
            key = (code, detail)
            if key in self.details or len(self.details) < MAX_DETAILS:
                self.details[key] += 1
            return
        us = _us(last)
        self.latency.record_value(us)
        bucket.latency.record_value(us)
        if first is not None:
            self.first_page.record_value(_us(first))

    def lag(self, seconds: float) -> None:
        self.loop_lag.record_value(_us(seconds))

    def pad(self, seconds: int) -> None:
        while len(self.seconds) < seconds:
            self.seconds.append(Second())

    def to_json(self) -> dict[str, Any]:
        return {
            "latency": encode(self.latency),
            "first_page": encode(self.first_page),
            "loop_lag": encode(self.loop_lag),
            "codes": dict(self.codes),
            "kinds": {k: dict(v) for k, v in self.kinds.items()},
            "details": [[code, detail, n] for (code, detail), n in self.details.items()],
            "seconds": [s.to_json() for s in self.seconds],
            "elapsed": self.elapsed,
            "cpu_seconds": self.cpu_seconds,
            "loop_busy": self.loop_busy,
            "workers": self.workers,
        }


def merge(bodies: list[dict[str, Any]]) -> Recording:
    """Recordings of parallel workers as one: histograms and counts add exactly;
    wall time is the longest worker's, CPU the sum of all, loop_busy the busiest's."""
    out = Recording(workers=0)
    for body in bodies:
        decode_into(out.latency, body["latency"])
        decode_into(out.first_page, body["first_page"])
        decode_into(out.loop_lag, body["loop_lag"])
        out.codes.update(body["codes"])
        for kind, codes in body["kinds"].items():
            out.kinds.setdefault(kind, Counter()).update(codes)
        for code, detail, n in body["details"]:
            out.details[(code, detail)] += n
        out.pad(len(body["seconds"]))
        for i, second in enumerate(body["seconds"]):
            out.seconds[i].add_json(second)
        out.elapsed = max(out.elapsed, body["elapsed"])
        out.cpu_seconds += body["cpu_seconds"]
        out.loop_busy = max(out.loop_busy, body["loop_busy"])  # the busiest worker's
        out.workers += body["workers"]
    return out
