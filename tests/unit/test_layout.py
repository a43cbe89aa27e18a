"""The folders' dependency rules, read off the import statements."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported(folder: str) -> dict[str, set[str]]:
    """Top-level module names each file under folder imports (relative ones resolved)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        if "proto" in path.parts:
            continue
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def test_features_and_training_never_import_the_server() -> None:
    for folder in ("features", "training"):
        for path, names in imported(folder).items():
            assert not [n for n in names if n.split(".")[0] == "server"], path


def test_the_ranking_imports_numpy_and_the_shared_features_only() -> None:
    allowed = {"numpy", "features", "server.ranking", *sys.stdlib_module_names}
    for path, names in imported("server/ranking").items():
        outside = sorted(
            n for n in names if not any(n == a or n.startswith(a + ".") for a in allowed)
        )
        assert not outside, (path, outside)


def test_the_servicer_and_admission_import_neither_numpy_nor_onnxruntime() -> None:
    for path, names in imported("server/transport").items():
        if path.endswith(("servicer.py", "admission.py")):
            assert not {n.split(".")[0] for n in names} & {"numpy", "onnxruntime", "torch"}, path


def test_serving_modules_never_import_torch_at_module_level() -> None:
    for path, names in imported("server").items():
        assert "torch" not in {n.split(".")[0] for n in names}, path
