"""Train, evaluate, export and register a ranker for a workspace."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from features import names
from features.model_inputs import (
    EMBEDDING_INPUTS,
    QUERY_INPUTS,
    SCALAR_INPUTS,
    feast_features,
    input_columns,
)
from features.relevance import DEFAULT_LEXICAL_SHARE
from features.workspace import Workspace
from training import dataset, gate, registry
from training.embeddings import EmbeddingConfig
from training.evaluate import EvalSet, baselines, build_eval_set, evaluate, format_table
from training.export import (
    INPUT_NAME,
    OUTPUT_NAME,
    data_hash,
    export_onnx,
    max_parity_error,
    model_path,
    versions,
    write_metadata,
)
from training.metrics import auc
from training.model import Ranker
from training.peers import AlsConfig
from training.stacking import stack_pairs

if TYPE_CHECKING:
    from training.publish import Published

PARITY_TOLERANCE = 1e-5
Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 8
    batch_size: int = 512
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    hidden: int = 128
    negatives: int = 4
    seed: int = 0
    eval_negatives: int = 99
    max_eval_users: int = 2000
    # Positives in the ranker's training set, sampled (seeded) beyond this.
    max_positives: int = 200_000
    # Learn user and item embeddings, publish them to Feast, and feed the ranker their score.
    embeddings: bool = True
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    # implicit's ALS beside MF (training.peers); None: MF alone.
    als: AlsConfig | None = field(default_factory=AlsConfig)
    # Each user's latest positives the embeddings never see and the ranker learns
    # from (training.stacking); 0, the default: the ranker learns from every
    # positive. Off by default: on MovieLens-1M only 1,649 of the 6,040 stack
    # positives had a feature snapshot before them, and the ranker trained on
    # those fell below the embeddings alone (docs/data-team.md).
    stack_per_user: int = 0
    # >0: the ranker's rows get out-of-fold ALS scores, each from the ALS fitted
    # without that pair's fold of this many (training.publish.FoldLookup).
    embedding_folds: int = 0
    # Train on the workspace's search events too, with the query's relevance parts as
    # inputs (training.search_rows), where it has them and item text vectors.
    query_inputs: bool = True
    search_candidates: int = 20  # rows per search event: what retrieval would give
    search_negatives: int = 20  # ... and uniform catalogue items
    # A sample: more drowned the interaction rows (10,000 gave 303k of 325k rows).
    max_search_events: int = 5_000


# Tuned on the NCF protocol (training/tune_embeddings_ml1m.py): wider vectors and
# L2 on the gathered rows took MovieLens-1M from HR@10 0.716 to 0.741 in 470 s.
EMBEDDINGS_BY_DATASET: dict[str, EmbeddingConfig] = {
    "movielens-1m": EmbeddingConfig(dim=128, epochs=30, l2=1e-2),
}


def config_for(dataset: str) -> TrainConfig:
    embedding = EMBEDDINGS_BY_DATASET.get(dataset, EmbeddingConfig())
    return TrainConfig(embedding=embedding)


@dataclass(frozen=True)
class TrainResult:
    version: str
    metrics: dict[str, dict[str, float]]
    table: str
    verdict: gate.Verdict

    def summary(self) -> str:
        if self.verdict.current:
            return f"model {self.version} is current ({self.verdict.reason})"
        return (
            f"model {self.version} is registered, not current ({self.verdict.reason}); "
            f"`shoprank models promote {self.version}` serves it anyway"
        )


def validation_cut(rows: int) -> int:
    """The training set's rows before this index train; the newest tenth validate."""
    return int(rows * 0.9)


def fit(data: dataset.TrainingSet, config: TrainConfig, progress: Progress) -> Ranker:
    """Adam on BCE; the last 10% of rows (the newest) report validation AUC."""
    torch.manual_seed(config.seed)
    cut = validation_cut(data.labels.size)
    x = torch.from_numpy(data.features)
    y = torch.from_numpy(data.labels)
    model = Ranker(data.features.shape[1], config.hidden)
    model.fit_scaler(data.features[:cut])
    optimiser = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    loss_fn = nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(config.seed)
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        total = 0.0
        for batch in torch.split(torch.randperm(cut, generator=generator), config.batch_size):
            optimiser.zero_grad()
            loss = loss_fn(model.logits(x[batch]), y[batch])
            loss.backward()
            optimiser.step()
            total += loss.item() * batch.numel()
        model.eval()
        with torch.no_grad():
            val = model(x[cut:]).numpy()
        progress(
            f"epoch {epoch}/{config.epochs}  loss {total / max(cut, 1):.4f}  "
            f"val auc {auc(val, data.labels[cut:]):.4f}  {time.perf_counter() - started:.1f}s"
        )
    return model


def onnx_scores(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def score(features: np.ndarray) -> np.ndarray:
        (scores,) = session.run([OUTPUT_NAME], {INPUT_NAME: features})
        return np.asarray(scores).reshape(-1)

    return score


def onnx_scorer(path: Path) -> Callable[[EvalSet], np.ndarray]:
    scores = onnx_scores(path)
    return lambda eval_set: scores(eval_set.features)


def standing(
    models_dir: Path, columns: list[str], rows: np.ndarray, labels: np.ndarray
) -> gate.Standing | None:
    """The current model's validation AUC: on these rows where it takes these inputs,
    else as recorded with it."""
    version = registry.current_version(models_dir)
    if version is None:
        return None
    model = registry.load(models_dir, version)
    if model.metadata.get("input_columns") == columns:
        return gate.Standing(version, auc(onnx_scores(model.model_path)(rows), labels), True)
    recorded = model.metadata.get("validation", {}).get("auc")
    return gate.Standing(version, recorded, False)


def train(
    workspace: Workspace, config: TrainConfig, progress: Progress, force: bool = False
) -> TrainResult:
    # One thread: the MLP is small, and on a shared 2-core machine two OpenMP
    # threads waiting on each other ran 10-100x slower (measured here).
    torch.set_num_threads(1)
    started = time.perf_counter()
    stack = None
    if config.stack_per_user:
        stack = stack_pairs(dataset.first_positives(workspace), config.stack_per_user)
        progress(f"stack: {len(stack)} positives the embeddings do not see, for the ranker")
    published = None
    if config.embeddings:
        from training.publish import learn_and_publish

        published = learn_and_publish(
            workspace, config.embedding, progress, stack, config.als, config.embedding_folds
        )
    lookup = published.training if published is not None else None
    search = None
    if config.query_inputs:
        from training.search_rows import search_rows

        search = search_rows(
            workspace,
            DEFAULT_LEXICAL_SHARE,
            config.search_candidates,
            config.max_search_events,
            config.seed,
            config.search_negatives,
        )
        if search is None:
            progress("no search events with item text vectors: the ranker takes no query")
        else:
            progress(f"search rows: {len(search)}, {int(search['label'].sum())} positives")
    data = dataset.build(
        workspace, config.negatives, config.seed, lookup, config.max_positives, stack, search
    )
    query = search is not None
    progress(f"training set: {data.labels.size} rows, {int(data.labels.sum())} positives")
    model = fit(data, config, progress)
    workspace.models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=workspace.models_dir))
    try:
        version, table, verdict = _export_and_register(
            workspace, model, data, config, staging, started, published, force, query
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return TrainResult(version, table, format_table(table), verdict)


def _export_and_register(
    workspace: Workspace,
    model: Ranker,
    data: dataset.TrainingSet,
    config: TrainConfig,
    staging: Path,
    started: float,
    published: Published | None,
    force: bool,
    query: bool,
) -> tuple[str, dict[str, dict[str, float]], gate.Verdict]:
    n_inputs = data.features.shape[1]
    export_onnx(model, n_inputs, model_path(staging))
    error = max_parity_error(model, model_path(staging), data.features[-1000:])
    if error > PARITY_TOLERANCE:
        raise RuntimeError(f"torch/ONNX parity failed: max abs error {error:.2e}")
    lookup = published.lookup if published is not None else None
    peers = published.peers if published is not None else {}
    eval_set = build_eval_set(
        workspace, config.eval_negatives, config.max_eval_users, config.seed, lookup, peers, query
    )
    table = evaluate(eval_set, {**baselines(eval_set), "ranker": onnx_scorer(model_path(staging))})
    cut = validation_cut(data.labels.size)
    rows, labels = data.features[cut:], data.labels[cut:]
    validation = {
        "auc": auc(onnx_scores(model_path(staging))(rows), labels),
        "rows": int(labels.size),
    }
    columns = input_columns(n_inputs - _fixed_inputs(config, query), config.embeddings, query)
    verdict = gate.decide(
        validation["auc"], standing(workspace.models_dir, columns, rows, labels), force
    )
    metadata = _metadata(workspace, data, config, table, error, started, n_inputs, query)
    if published is not None:
        metadata["embedding_learner"] = published.learner
        metadata["embedding_learners"] = published.learners  # validation figures, seconds
        metadata["embedding_pairs"] = published.pairs
    metadata |= {
        "validation": validation,
        "gate": {"current": verdict.current, "reason": verdict.reason},
    }
    write_metadata(staging, metadata)
    version = registry.publish(workspace.models_dir, staging, make_current=verdict.current)
    return version, table, verdict


def _fixed_inputs(config: TrainConfig, query: bool) -> int:
    """The inputs besides the interest vector's."""
    embedded = len(EMBEDDING_INPUTS) if config.embeddings else 0
    return len(SCALAR_INPUTS) + embedded + (len(QUERY_INPUTS) if query else 0)


def _metadata(
    workspace: Workspace,
    data: dataset.TrainingSet,
    config: TrainConfig,
    table: dict[str, dict[str, float]],
    parity_error: float,
    started: float,
    n_inputs: int,
    query: bool,
) -> dict[str, Any]:
    embeddings = config.embeddings
    vector_dim = n_inputs - _fixed_inputs(config, query)
    return {
        "format": 1,
        "feature_service": names.feature_service(embeddings),
        "feast_features": list(feast_features(embeddings)),
        "embeddings": embeddings,
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "input_columns": input_columns(vector_dim, embeddings, query),
        "query_inputs": query,
        "query_lexical_share": DEFAULT_LEXICAL_SHARE if query else None,
        "vector_dim": vector_dim,
        "versions": versions(),
        "metrics": table,
        "parity_max_abs_error": parity_error,
        "data_hash": data_hash(
            [workspace.events_path, workspace.user_features_path, workspace.item_features_path]
        ),
        "trained_at": datetime.now(UTC).isoformat(),
        "train_seconds": round(time.perf_counter() - started, 1),
        "training_rows": int(data.labels.size),
        "config": asdict(config),
    }
