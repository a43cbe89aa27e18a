import json
from pathlib import Path

import pytest

from training import registry


def _staging(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir()
    (path / registry.METADATA_FILE).write_text(json.dumps({"metrics": {"ranker": {"auc": 0.5}}}))
    (path / registry.MODEL_FILE).write_bytes(b"onnx")
    return path


def test_publish_numbers_versions_and_marks_the_newest_current(tmp_path: Path) -> None:
    models = tmp_path / "models"
    assert registry.publish(models, _staging(tmp_path, "a")) == "0001"
    assert registry.publish(models, _staging(tmp_path, "b")) == "0002"
    assert registry.current_version(models) == "0002"
    assert [(m.version, m.current) for m in registry.versions(models)] == [
        ("0001", False),
        ("0002", True),
    ]


def test_publish_without_make_current_keeps_the_served_version(tmp_path: Path) -> None:
    models = tmp_path / "models"
    registry.publish(models, _staging(tmp_path, "a"))
    registry.publish(models, _staging(tmp_path, "b"), make_current=False)
    assert registry.current_version(models) == "0001"


def test_set_current_refuses_a_missing_version(tmp_path: Path) -> None:
    models = tmp_path / "models"
    registry.publish(models, _staging(tmp_path, "a"))
    with pytest.raises(FileNotFoundError, match="no model version '0009'"):
        registry.set_current(models, "0009")
    assert registry.current_version(models) == "0001"


def test_an_empty_registry_has_no_versions(tmp_path: Path) -> None:
    assert registry.versions(tmp_path / "none") == []
    assert registry.current_version(tmp_path / "none") is None


def test_promote_pushes_the_history_and_rollback_pops_it(tmp_path: Path) -> None:
    models = tmp_path / "models"
    for name in "abc":
        registry.publish(models, _staging(tmp_path, name), make_current=name == "a")
    registry.promote(models, "0003")
    registry.promote(models, "0003")  # promoting what is current adds nothing
    registry.promote(models, "0002")
    assert (models / registry.HISTORY_FILE).read_text() == "0001\n0003\n0002\n"
    assert registry.rollback(models) == "0003"
    assert registry.current_version(models) == "0003"
    assert registry.rollback(models) == "0001"
    with pytest.raises(ValueError, match="no earlier version to roll back to"):
        registry.rollback(models)
    assert registry.current_version(models) == "0001"


def test_a_registry_from_before_the_history_starts_it_at_its_current(tmp_path: Path) -> None:
    models = tmp_path / "models"
    registry.publish(models, _staging(tmp_path, "a"))
    (models / registry.HISTORY_FILE).unlink()
    registry.publish(models, _staging(tmp_path, "b"))
    assert (models / registry.HISTORY_FILE).read_text() == "0001\n0002\n"
