"""The ranker: the method's MLP (Linear -> ReLU -> Linear, hidden 128).

Input standardisation lives inside the module as buffers, so the exported
ONNX graph takes raw features and nothing outside it can drift. The output
is a probability, so served scores are in [0, 1] and comparable across
requests.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Ranker(nn.Module):
    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, n_inputs: int, hidden: int = 128) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_inputs))
        self.register_buffer("scale", torch.ones(n_inputs))
        self.mlp = nn.Sequential(nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def fit_scaler(self, features: np.ndarray) -> None:
        mean = features.mean(axis=0)
        std = features.std(axis=0)
        self.mean.copy_(torch.from_numpy(mean.astype(np.float32)))
        # Constant columns (a token nobody carries) would divide by zero.
        self.scale.copy_(torch.from_numpy(np.where(std > 1e-6, std, 1.0).astype(np.float32)))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        scores: torch.Tensor = self.mlp((features - self.mean) / self.scale)
        return scores.squeeze(-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(features))

    def fused(self) -> nn.Module:
        """The same function with the standardisation folded into the first layer.

        (x - m) / s @ W.T + b  ==  x @ (W / s).T + (b - (W / s) @ m), so the
        served graph is Gemm, Relu, Gemm, Sigmoid: two fewer passes over the
        input per request.
        """
        first = self.mlp[0]
        assert isinstance(first, nn.Linear)
        folded = nn.Linear(first.in_features, first.out_features)
        with torch.no_grad():
            weight = first.weight / self.scale
            folded.weight.copy_(weight)
            folded.bias.copy_(first.bias - weight @ self.mean)
        return nn.Sequential(folded, *list(self.mlp)[1:], nn.Flatten(0), nn.Sigmoid()).eval()
