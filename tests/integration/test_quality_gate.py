"""`shoprank train` on a real workspace: every model registered, the worse one held
back, --force overriding; `models list` shows both splits' figures."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import pytest

from features.workspace import Stores, Workspace
from server.cli.commands import cmd_models
from server.config import Settings
from tests.support import materialized_copy, small_training
from training import registry
from training.train import train


def quiet(_: str) -> None:
    pass


def test_a_worse_model_is_registered_not_current_and_force_makes_it_current(
    workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = materialized_copy(workspace, tmp_path / "home", Stores())
    models = home.models_dir
    good = train(home, small_training(), quiet)
    assert good.verdict.current and registry.current_version(models) == good.version
    assert good.verdict.reason.endswith("on the same rows, tolerance 0.005")

    untrained = replace(small_training(), epochs=0)  # the MLP as initialised
    worse = train(home, untrained, quiet)
    assert not worse.verdict.current
    assert registry.current_version(models) == good.version
    assert worse.verdict.reason.endswith(
        f"of {good.version} on the same rows: worse by more than 0.005"
    )
    held = registry.load(models, worse.version).metadata
    assert held["gate"] == {"current": False, "reason": worse.verdict.reason}
    assert (
        held["validation"]["auc"]
        < registry.load(models, good.version).metadata["validation"]["auc"]
    )
    assert "is registered, not current" in worse.summary()

    forced = train(home, untrained, quiet, force=True)
    assert forced.verdict.reason == "--force"
    assert registry.current_version(models) == forced.version

    cmd_models(Settings(home=home.home), argparse.Namespace(action="list", version=None))
    rows = {line[2:].split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows[worse.version].endswith("held back")
    assert rows[forced.version].startswith("* ") and rows[forced.version].endswith("made current")
    figures = rows[good.version][2:].split()[2:6]
    meta = registry.load(models, good.version).metadata
    ranker = meta["metrics"]["ranker"]
    assert figures == [
        f"{meta['validation']['auc']:.4f}",
        f"{ranker['ndcg@10']:.4f}",
        f"{ranker['hr@10']:.4f}",
        f"{ranker['auc']:.4f}",
    ]
