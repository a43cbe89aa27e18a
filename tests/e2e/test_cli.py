"""The command line: failures are one plain line on stderr and a non-zero exit."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from importlib import resources
from pathlib import Path

import grpc
import pytest

from features.workspace import Workspace
from server.cli import main
from server.processes import free_port
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc


def test_rank_against_no_server_fails_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["rank", "--server", "127.0.0.1:1", "--user", "u", "--candidates", "a", "--timeout", "2"]
    )
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("shoprank rank: UNAVAILABLE") or "DEADLINE_EXCEEDED" in err[0]


def test_an_unknown_environment_setting_fails_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOPRANK_PROT", "1")
    assert main(["models", "list"]) == 1
    assert capsys.readouterr().err.strip() == (
        "shoprank models: unknown setting SHOPRANK_PROT; known: " + _known()
    )


def _known() -> str:
    from dataclasses import fields

    from server.config import Settings

    return ", ".join("SHOPRANK_" + f.name.upper() for f in fields(Settings))


def test_serve_on_an_empty_home_says_what_to_run(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--home", str(tmp_path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"shoprank serve: no Feast repo at {tmp_path / 'feature_repo'}; "
        "run `shoprank features apply` first"
    )


def test_models_list_on_an_empty_home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list", "--home", str(tmp_path)]) == 0
    assert "no models" in capsys.readouterr().out


def test_serve_runs_processes_on_one_port_and_stops_on_sigterm(workspace: Workspace) -> None:
    port = free_port("127.0.0.1")
    command = [
        sys.executable,
        "-m",
        "server.cli",
        "serve",
        "--home",
        str(workspace.home),
        "--port",
        str(port),
        "--processes",
        "2",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline()  # printed once every process serves
        assert f"serving on 127.0.0.1:{port} with 2 process(es)" in ready
        request = pb.RankRequest(user_id="user_000001", candidate_item_ids=["item_000001"])
        for _ in range(4):  # separate connections, spread over the processes
            with grpc.insecure_channel(
                f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
            ) as ch:
                pages = list(pb_grpc.RankerStub(ch).Rank(request, timeout=10))
                assert pages[0].items[0].item_id == "item_000001"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_the_plain_feast_cli_lists_the_views_of_a_workspace_with_no_variables_set(
    workspace: Workspace,
) -> None:
    """`features apply` writes the resolved stores into feature_store.yaml: the data
    team's own `feast -c <home>/feature_repo ...` sees the same stores as shoprank."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOPRANK_", "FEAST_"))}
    feast = Path(sys.executable).with_name("feast")
    listed = subprocess.run(
        [str(feast), "-c", str(workspace.repo_dir), "feature-views", "list"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    names = set(listed.stdout.split())
    assert {"user_features", "item_features", "user_embeddings", "item_embeddings"} <= names
    assert not list(workspace.repo_dir.glob("$*"))  # no registry file named after a variable


def test_train_without_the_train_extra_says_what_to_install(tmp_path: Path) -> None:
    blocker = tmp_path / "no_torch" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker.parent), str(root)])}
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "train", "--home", str(tmp_path / "home")],
        env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "shoprank train: this command needs torch, from the train extra: "
        "pip install torch==2.13.0, then pip install 'shoprank[train]'"
    )


def test_proto_writes_a_contract_that_compiles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from grpc_tools import protoc

    assert main(["proto", "--out", str(tmp_path / "contract")]) == 0
    written = tmp_path / "contract" / "shoprank" / "v1" / "ranking.proto"
    assert f"wrote {written}" in capsys.readouterr().out
    (tmp_path / "out").mkdir()
    # The well-known types (google/protobuf/timestamp.proto) ship with every protoc;
    # grpc_tools keeps its copy here, as `python -m grpc_tools.protoc` passes it.
    well_known = resources.files("grpc_tools") / "_proto"
    compiled = protoc.main(
        [
            "protoc",
            f"-I{tmp_path / 'contract'}",
            f"-I{well_known}",
            f"--python_out={tmp_path / 'out'}",
            str(written),
        ]
    )
    assert compiled == 0
    assert (tmp_path / "out" / "shoprank" / "v1" / "ranking_pb2.py").exists()


def test_models_promote_and_rollback_say_what_is_current(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from training import registry

    models = tmp_path / "home" / "models"
    for name in ("a", "b"):
        staging = tmp_path / name
        staging.mkdir()
        (staging / registry.METADATA_FILE).write_text(json.dumps({"metrics": {}}))
        registry.publish(models, staging, make_current=name == "a")
    home = ["--home", str(tmp_path / "home")]
    assert main(["models", "promote", "0002", *home]) == 0
    assert main(["models", "rollback", *home]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "0002 is current; servers swap it in within their model poll interval",
        "rolled back: 0001 is current",
    ]
    assert main(["models", "rollback", *home]) == 1
    assert main(["models", "promote", *home]) == 1
    assert main(["models", "promote", "0009", *home]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"shoprank models: no earlier version to roll back to in {models}",
        "shoprank models: models promote needs a VERSION; `shoprank models list` shows them",
        f"shoprank models: no model version '0009' in {models}",
    ]


@pytest.mark.parametrize("case", ["no batch", "spark dry run", "before any backfill"])
def test_the_data_teams_commands_fail_with_one_line(
    case: str, workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support import copy_workspace

    home = copy_workspace(workspace, tmp_path / "home")
    words, message = {
        "no batch": (
            ["features", "materialize", "--batch-rows", "0"],
            "--batch-rows 0: a batch holds at least one entity",
        ),
        "spark dry run": (
            ["features", "backfill", "--engine", "spark", "--dry-run"],
            "--dry-run is the local engine's; leave out --engine spark",
        ),
        "before any backfill": (
            ["features", "materialize"],
            f"no offline tables under {home.offline_dir}; run `shoprank features backfill` first",
        ),
    }[case]
    if case == "before any backfill":
        shutil.rmtree(home.offline_dir)
    assert main(["features", "apply", "--home", str(home.home)]) == 0
    capsys.readouterr()
    assert main([*words, "--home", str(home.home)]) == 1
    assert capsys.readouterr().err.strip() == f"shoprank features: {message}"


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["--embedding-folds", "1"], "--embedding-folds 1: 0 (off), or 2 or more"),
        (["--stack-per-user", "-1"], "--stack-per-user -1: 0 (off), or 1 or more"),
        (
            ["--stack-per-user", "1", "--embedding-folds", "5"],
            "--stack-per-user and --embedding-folds are two schemes; pick one",
        ),
    ],
)
def test_train_refuses_a_bad_scheme_in_one_line(
    words: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", *words, "--home", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == f"shoprank train: {message}"
