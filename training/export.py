"""ONNX export of the ranker, its metadata, and the torch/ONNX parity check."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.model import Ranker
from training.registry import METADATA_FILE, MODEL_FILE

INPUT_NAME = "features"
OUTPUT_NAME = "score"


def export_onnx(model: Ranker, n_inputs: int, path: Path) -> None:
    """A single-file model with a dynamic batch axis, standardisation folded in."""
    model.eval()
    # The exporter logs a warning per torchvision op it skips; we use none.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    batch = torch.export.Dim("batch", min=1)
    torch.onnx.export(
        model.fused(),
        (torch.zeros(2, n_inputs),),
        str(path),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: batch},),
        # The model is small; one file is simpler to version and copy.
        external_data=False,
        dynamo=True,
        verbose=False,
    )


def max_parity_error(model: Ranker, path: Path, sample: np.ndarray) -> float:
    """Largest |torch - onnxruntime| over the sample; the caller asserts on it."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_scores,) = session.run([OUTPUT_NAME], {INPUT_NAME: sample.astype(np.float32)})
    with torch.no_grad():
        torch_scores = model(torch.from_numpy(sample.astype(np.float32))).numpy()
    return float(np.max(np.abs(onnx_scores - torch_scores)))


def versions() -> dict[str, str]:
    names = ("shoprank", "torch", "onnx", "onnxruntime", "onnxscript", "feast", "numpy")
    return {name: package_metadata.version(name) for name in names}


def data_hash(paths: Iterable[Path]) -> str:
    """sha256 over the training inputs, so a model names the data it saw."""
    digest = hashlib.sha256()
    files = [f for p in paths for f in (sorted(p.glob("*.parquet")) if p.is_dir() else [p])]
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def write_metadata(directory: Path, body: dict[str, Any]) -> None:
    (directory / METADATA_FILE).write_text(json.dumps(body, indent=2, sort_keys=True))


def model_path(directory: Path) -> Path:
    return directory / MODEL_FILE
