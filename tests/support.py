"""Real servers and workspaces for the tests: no fakes of Feast, gRPC or ONNX."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import uvloop

from features import store
from features.offline import backfill
from features.synthetic import SyntheticSpec, prepare
from features.workspace import Stores, Workspace
from server.app import Loaded, Running, create_server
from server.config import Settings

if TYPE_CHECKING:  # torch: imported by the tests that train, not by every test
    from training.train import TrainConfig

SMALL = SyntheticSpec(users=300, items=200, days=14, seed=11)


def build_workspace(
    home: Path, spec: SyntheticSpec = SMALL, train: bool = True, encoder: Path | None = None
) -> Workspace:
    """data -> apply -> backfill -> materialize (-> train), all real. encoder: an
    exported text encoder, linked into the workspace so its item text is embedded."""
    workspace = Workspace(home)
    prepare(workspace, spec)
    if encoder is not None:
        workspace.text_encoder_dir.symlink_to(encoder, target_is_directory=True)
    store.apply(workspace)
    backfill(workspace)
    store.materialize(workspace)
    if train:
        from training.train import train as train_model

        train_model(workspace, small_training(), lambda _: None)
    return workspace


def small_training() -> TrainConfig:
    """The tests' training: a few seconds on SMALL."""
    from training.embeddings import EmbeddingConfig
    from training.train import TrainConfig

    return TrainConfig(epochs=2, max_eval_users=100, embedding=EmbeddingConfig(dim=8, epochs=3))


def copy_workspace(source: Workspace, home: Path, stores: Stores | None = None) -> Workspace:
    """The source's data, offline tables and models; not its registry or online store."""
    target = Workspace(home, stores or Stores())
    shutil.copytree(source.data_dir, target.data_dir)
    shutil.copytree(source.offline_dir, target.offline_dir)
    shutil.copytree(source.models_dir, target.models_dir)
    return target


def materialized_copy(source: Workspace, home: Path, stores: Stores) -> Workspace:
    workspace = copy_workspace(source, home, stores)
    store.apply(workspace)
    store.materialize(workspace)
    return workspace


class ServerThread:
    """A grpc.aio server on its own event loop in a background thread."""

    def __init__(
        self, settings: Settings, loaded: Loaded | None = None, tracer: object = None
    ) -> None:
        self.settings = settings
        self._loaded = loaded
        self._tracer = tracer
        self._loop = uvloop.new_event_loop()  # the loop `shoprank serve` runs on
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.running: Running | None = None

    def start(self) -> int:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            create_server(self.settings, self._loaded, self._tracer), self._loop
        )
        self.running = future.result(timeout=60)
        return self.running.port

    def stop(self) -> None:
        if self.running is not None:
            asyncio.run_coroutine_threadsafe(self.running.stop(0.5), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
