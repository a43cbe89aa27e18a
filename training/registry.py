"""The model registry: one directory per version, and a CURRENT marker.

    models/0001/ranker.onnx   the ranker, weights embedded
    models/0001/ranker.json   ordered inputs, FeatureService, versions, metrics, data hash
    models/CURRENT            the version the server serves
    models/HISTORY            the versions made current, oldest first: rollback pops it

A version directory appears by one rename of a complete staging directory,
and CURRENT is replaced atomically, so a reader never sees half a model.
No torch here: the server reads the registry.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_FILE = "ranker.onnx"
METADATA_FILE = "ranker.json"
CURRENT_FILE = "CURRENT"
HISTORY_FILE = "HISTORY"


@dataclass(frozen=True)
class ModelVersion:
    version: str
    path: Path
    metadata: dict[str, Any]
    current: bool

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE


def current_version(models_dir: Path) -> str | None:
    marker = models_dir / CURRENT_FILE
    return marker.read_text().strip() if marker.exists() else None


def set_current(models_dir: Path, version: str) -> None:
    """Make `version` current, and remember it in the history (a promotion)."""
    if not (models_dir / version / METADATA_FILE).exists():
        raise FileNotFoundError(f"no model version {version!r} in {models_dir}")
    history = _history(models_dir)
    if history[-1:] != [version]:
        _write(models_dir, HISTORY_FILE, "".join(f"{v}\n" for v in [*history, version]))
    _write(models_dir, CURRENT_FILE, version + "\n")


def promote(models_dir: Path, version: str) -> None:
    """`shoprank models promote VERSION`: serve an existing version."""
    set_current(models_dir, version)


def rollback(models_dir: Path) -> str:
    """`shoprank models rollback`: back to the version current before this one;
    each rollback goes one further back. Returns the version now current."""
    history = _history(models_dir)
    if len(history) < 2:
        raise ValueError(f"no earlier version to roll back to in {models_dir}")
    history.pop()
    version = history[-1]
    if not (models_dir / version / METADATA_FILE).exists():
        raise FileNotFoundError(f"version {version} in the history is gone from {models_dir}")
    _write(models_dir, HISTORY_FILE, "".join(f"{v}\n" for v in history))
    _write(models_dir, CURRENT_FILE, version + "\n")
    return version


def _history(models_dir: Path) -> list[str]:
    marker = models_dir / HISTORY_FILE
    if marker.exists():
        return [line.strip() for line in marker.read_text().splitlines() if line.strip()]
    current = current_version(models_dir)  # a registry from before the history
    return [current] if current else []


def _write(models_dir: Path, name: str, text: str) -> None:
    """Replace a marker file atomically: a reader sees the old or the new, whole."""
    tmp = models_dir / f".{name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, models_dir / name)


def load(models_dir: Path, version: str) -> ModelVersion:
    path = models_dir / version
    metadata = json.loads((path / METADATA_FILE).read_text())
    return ModelVersion(version, path, metadata, version == current_version(models_dir))


def versions(models_dir: Path) -> list[ModelVersion]:
    if not models_dir.exists():
        return []
    names = sorted(p.name for p in models_dir.iterdir() if (p / METADATA_FILE).exists())
    return [load(models_dir, name) for name in names]


def publish(models_dir: Path, staging: Path, make_current: bool = True) -> str:
    """Move a complete staging directory in as the next version."""
    models_dir.mkdir(parents=True, exist_ok=True)
    while True:
        taken = [int(p.name) for p in models_dir.iterdir() if p.name.isdigit()]
        version = f"{max(taken, default=0) + 1:04d}"
        try:
            # Fails if a concurrent publisher took the number first; then retry.
            os.rename(staging, models_dir / version)
            break
        except OSError:
            if (models_dir / version).exists():
                continue
            raise
    if make_current:
        set_current(models_dir, version)
    return version
