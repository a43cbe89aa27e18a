"""Shared fixtures: a real workspace built end to end, and a real server on port 0."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from features.workspace import Workspace
from server.app import load
from server.config import Settings
from tests.support import ServerThread, build_workspace


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return build_workspace(tmp_path_factory.mktemp("workspace"))


@pytest.fixture(scope="session")
def text_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-MiniLM-L6-v2 exported to ONNX once per session (about 8 s, with torch)."""
    from training.text_encoder import export_text_encoder

    directory = tmp_path_factory.mktemp("text_encoder")
    export_text_encoder(directory)
    return directory


@pytest.fixture(scope="session")
def server_settings(workspace: Workspace) -> Settings:
    return Settings(
        home=workspace.home, port=0, max_candidates=50, max_id_length=64, default_page_size=3
    )


@pytest.fixture(scope="session")
def server_address(server_settings: Settings) -> Iterator[str]:
    """HOST:PORT of a real server over the session's workspace."""
    server = ServerThread(server_settings, load(server_settings))
    port = server.start()
    yield f"127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def channel(server_address: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server_address) as ch:
        yield ch
