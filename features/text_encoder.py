"""The language model that embeds text, as an ONNX graph: all-MiniLM-L6-v2.

`shoprank features text-encoder` exports it (training/text_encoder.py, with torch);
this runs it with onnxruntime and the `tokenizers` library, so the backfill that
embeds item text and the server that embeds queries share one encoder, one
tokenizer and one vector space, and neither imports torch. The graph takes
token ids and the attention mask and gives the mean of the token states over the
mask, at unit length: what sentence-transformers gives for this model (a test
holds the two within 1e-5).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer

GRAPH: Final = "text_encoder.onnx"
TOKENIZER: Final = "tokenizer.json"
META: Final = "text_encoder.json"
# Tokens kept of a text: the model was trained on 256 (sentence_bert_config.json);
# a query is limited to 1,024 bytes before it gets here.
MAX_TOKENS: Final = 256


@dataclass(frozen=True)
class EncoderMeta:
    model: str  # what was exported, e.g. "sentence-transformers/all-MiniLM-L6-v2"
    dim: int
    max_tokens: int


def exported(directory: Path) -> bool:
    return all((directory / name).exists() for name in (GRAPH, TOKENIZER, META))


def read_meta(directory: Path) -> EncoderMeta:
    raw = json.loads((directory / META).read_text())
    return EncoderMeta(str(raw["model"]), int(raw["dim"]), int(raw["max_tokens"]))


class TextEncoder:
    """Texts to float32 unit vectors [n, dim]. load() reads the files; encode() is
    thread-safe (an onnxruntime session may be run from several threads)."""

    def __init__(self, directory: Path, threads: int = 1) -> None:
        self.directory = directory
        self._threads = threads
        self._session: Any = None
        self._tokenizer: Tokenizer | None = None
        self.meta: EncoderMeta | None = None

    def load(self) -> TextEncoder:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if not exported(self.directory):
            raise FileNotFoundError(
                f"no text encoder at {self.directory}; run `shoprank features text-encoder`"
            )
        self.meta = read_meta(self.directory)
        tokenizer = Tokenizer.from_file(str(self.directory / TOKENIZER))
        tokenizer.enable_truncation(min(self.meta.max_tokens, MAX_TOKENS))
        tokenizer.no_padding()  # padded per batch, to the batch's longest text
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(self.directory / GRAPH), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = tokenizer
        return self

    @property
    def dim(self) -> int:
        if self.meta is None:
            raise RuntimeError("TextEncoder.load() was not called")
        return self.meta.dim

    def encode(self, texts: list[str], batch: int = 64) -> np.ndarray:
        """float32 [len(texts), dim], row i for texts[i]. Texts are encoded in batches
        of similar length, so little of a batch is padding."""
        if self._tokenizer is None or self._session is None:
            raise RuntimeError("TextEncoder.load() was not called")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(texts)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(texts))
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(texts), batch):
            rows = order[start : start + batch]
            width = int(lengths[rows].max())
            ids = np.zeros((rows.size, width), dtype=np.int64)  # 0 is [PAD]
            mask = np.zeros((rows.size, width), dtype=np.int64)
            for j, row in enumerate(rows.tolist()):
                n = int(lengths[row])
                ids[j, :n] = encodings[row].ids
                mask[j, :n] = 1
            (vectors,) = self._session.run(None, {"input_ids": ids, "attention_mask": mask})
            out[rows] = vectors
        return out
