from pathlib import Path

import pytest

from server.config import ConfigError, Settings, from_env, with_overrides


def test_defaults_without_environment() -> None:
    assert from_env({}) == Settings()
    assert Settings().home == Path("var") and Settings().port == 50051


def test_environment_values_are_typed() -> None:
    settings = from_env({"SHOPRANK_HOME": "/data/ws", "SHOPRANK_PORT": "6000", "PATH": "/bin"})
    assert settings.home == Path("/data/ws")
    assert settings.port == 6000


def test_an_unknown_shoprank_variable_is_rejected_by_name() -> None:
    with pytest.raises(ConfigError, match="unknown setting SHOPRANK_PROT"):
        from_env({"SHOPRANK_PROT": "6000"})


def test_a_malformed_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="SHOPRANK_PORT='sixty' is not a valid int"):
        from_env({"SHOPRANK_PORT": "sixty"})


def test_flags_override_the_environment_and_are_validated() -> None:
    settings = with_overrides(from_env({"SHOPRANK_PORT": "6000"}), port=7000, host=None)
    assert settings.port == 7000 and settings.host == "127.0.0.1"
    with pytest.raises(ConfigError, match="max_candidates must be at least 1"):
        with_overrides(Settings(), max_candidates=0)
