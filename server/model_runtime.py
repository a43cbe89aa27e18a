"""The ONNX ranker at serving time: load, check against Feast, score."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from features.errors import FeatureSchemaMismatch
from features.model_inputs import feast_features, input_columns
from server.errors import StartupError
from training import registry


@dataclass(frozen=True)
class ModelInfo:
    version: str
    feature_service: str
    feast_features: tuple[str, ...]
    vector_dim: int
    input_name: str
    output_name: str
    embeddings: bool = False
    query: bool = False  # takes the query's relevance parts (features.model_inputs)
    query_share: float = 1.0  # ... fused at this lexical share in training


def check_wiring(info: ModelInfo, service_refs: Set[str]) -> None:
    """The model's recorded inputs must be exactly what the FeatureService serves."""
    recorded = set(info.feast_features)
    missing = sorted(recorded - service_refs)
    extra = sorted(service_refs - recorded)
    if missing or extra:
        raise StartupError(
            f"model {info.version} does not match FeatureService {info.feature_service!r}: "
            f"the model needs {missing or 'nothing more'}, the service also serves "
            f"{extra or 'nothing more'}; retrain, or apply the matching feature repo"
        )
    if recorded not in (set(feast_features(False)), set(feast_features(True))):
        raise StartupError(
            f"model {info.version} was trained on features {sorted(recorded)}, but this "
            f"server assembles {sorted(feast_features(info.embeddings))}; deploy a matching server"
        )


def _info(version: str, metadata: dict[str, Any]) -> ModelInfo:
    try:
        info = ModelInfo(
            version=version,
            feature_service=metadata["feature_service"],
            feast_features=tuple(metadata["feast_features"]),
            vector_dim=int(metadata["vector_dim"]),
            input_name=metadata["input_name"],
            output_name=metadata["output_name"],
            embeddings=bool(metadata.get("embeddings", False)),
            query=bool(metadata.get("query_inputs", False)),
            query_share=float(metadata.get("query_lexical_share") or 1.0),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise StartupError(f"model {version} metadata is incomplete: {error!r}") from None
    if metadata.get("input_columns") != input_columns(info.vector_dim, info.embeddings, info.query):
        raise StartupError(f"model {version} expects other input columns than this server builds")
    return info


class OnnxRanker:
    """One ONNX Runtime session, scoring all candidates of a request in one call."""

    def __init__(self, info: ModelInfo, session: Any) -> None:
        self.info = info
        self._width = len(input_columns(info.vector_dim, info.embeddings, info.query))
        inputs = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        if info.input_name not in inputs or info.output_name not in outputs:
            raise StartupError(
                f"model {info.version} records input {info.input_name!r} and output "
                f"{info.output_name!r}, its graph has {inputs} and {outputs}; re-export it"
            )
        # InferenceSession.run re-checks the input names (checked above, once) and
        # WebGPU and OrtValue rules that a CPU session fed numpy never meets, each
        # call: about 1.5% of a loaded server's CPU. Calls go to its binding instead.
        self._run = getattr(session, "_sess", session).run

    @classmethod
    def load(cls, models_dir: Path, version: str | None, threads: int) -> OnnxRanker:
        import onnxruntime as ort

        try:
            model = registry.load(models_dir, version) if version else None
        except (OSError, ValueError) as error:
            raise StartupError(f"cannot read model {version} in {models_dir}: {error}") from None
        if model is None:
            raise StartupError(f"no current model in {models_dir}")
        info = _info(model.version, model.metadata)
        options = ort.SessionOptions()
        # Requests are small and concurrent: parallelism comes from requests,
        # not from splitting a 100-row matmul across cores.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(
                str(model.model_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:
            raise StartupError(f"model {model.version} cannot be loaded: {error}") from None
        return cls(info, session)

    def score(self, features: np.ndarray) -> np.ndarray:
        if features.shape[1] != self._width:
            raise FeatureSchemaMismatch(
                f"served features make {features.shape[1]} model inputs, model "
                f"{self.info.version} takes {self._width}; re-materialize or retrain"
            )
        (scores,) = self._run([self.info.output_name], {self.info.input_name: features}, None)
        return np.asarray(scores, dtype=np.float32).reshape(-1)
