"""The exported ONNX model computes what the torch model computes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from numpy.testing import assert_allclose

from features.model_inputs import input_columns
from server.errors import StartupError
from server.model_runtime import ModelInfo, OnnxRanker
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


def test_the_served_ranker_scores_as_the_session_and_refuses_names_its_graph_lacks(
    tmp_path: Path,
) -> None:
    width = len(input_columns(2))
    path = tmp_path / "ranker.onnx"
    export_onnx(_model(width), width, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    info = ModelInfo("0001", "ranker_v1", (), 2, INPUT_NAME, OUTPUT_NAME)
    x = np.random.default_rng(2).normal(size=(5, width)).astype(np.float32)
    (expected,) = session.run([OUTPUT_NAME], {INPUT_NAME: x})
    assert np.array_equal(OnnxRanker(info, session).score(x), expected)
    with pytest.raises(StartupError, match="records input 'rows'"):
        OnnxRanker(replace(info, input_name="rows"), session)
    with pytest.raises(StartupError, match="output 'logit'"):
        OnnxRanker(replace(info, output_name="logit"), session)
