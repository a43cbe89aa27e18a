"""The exported ONNX model computes what the torch model computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from numpy.testing import assert_allclose

from training.export import INPUT_NAME, OUTPUT_NAME, export_onnx
from training.model import Ranker


def _model(n_inputs: int) -> Ranker:
    torch.manual_seed(3)
    model = Ranker(n_inputs, hidden=16)
    model.fit_scaler(np.random.default_rng(0).normal(2.0, 3.0, (64, n_inputs)).astype(np.float32))
    return model


def test_onnx_scores_equal_torch_scores_for_any_batch_size(tmp_path: Path) -> None:
    model = _model(9)
    path = tmp_path / "ranker.onnx"
    export_onnx(model, 9, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for batch in (1, 7, 300):
        x = rng.normal(size=(batch, 9)).astype(np.float32)
        (onnx_scores,) = session.run([OUTPUT_NAME], {INPUT_NAME: x})
        with torch.no_grad():
            torch_scores = model(torch.from_numpy(x)).numpy()
        assert onnx_scores.shape == (batch,)
        assert_allclose(onnx_scores, torch_scores, rtol=1e-5, atol=1e-6)


def test_export_is_one_file_with_a_dynamic_batch_axis(tmp_path: Path) -> None:
    path = tmp_path / "ranker.onnx"
    export_onnx(_model(4), 4, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ranker.onnx"]
    graph = onnx.load(str(path)).graph
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value
