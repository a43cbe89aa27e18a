from pathlib import Path

import pytest
import yaml

from server.config import ConfigError, Settings, feast_environment, from_env, with_overrides


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


def test_the_online_store_is_sqlite_redis_or_redis_cluster() -> None:
    assert from_env({"SHOPRANK_ONLINE_STORE": "redis_cluster"}).online_store == "redis_cluster"
    with pytest.raises(ConfigError, match="online_store must be one of sqlite, redis, redis_c"):
        from_env({"SHOPRANK_ONLINE_STORE": "memcached"})


def test_redis_takes_a_feast_connection_string_not_a_url() -> None:
    ok = from_env({"SHOPRANK_ONLINE_STORE": "redis", "SHOPRANK_REDIS": "10.0.0.1:7000,db=3"})
    assert ok.redis == "10.0.0.1:7000,db=3"
    with pytest.raises(ConfigError, match="redis must be a Feast connection string"):
        from_env({"SHOPRANK_ONLINE_STORE": "redis", "SHOPRANK_REDIS": "redis://10.0.0.1:6379"})


def test_the_registry_is_empty_or_a_url() -> None:
    with pytest.raises(ConfigError, match=r"registry must be empty .* or a SQLAlchemy URL"):
        from_env({"SHOPRANK_REGISTRY": "data/registry.db"})


def test_the_feast_variables_shoprank_exports_are_not_unknown_settings() -> None:
    exported = feast_environment(Settings())
    assert set(exported) == {"SHOPRANK_FEAST_ONLINE_STORE", "SHOPRANK_FEAST_REGISTRY"}
    assert from_env(exported) == Settings()


def test_the_feast_variables_are_yaml_mappings_feast_reads() -> None:
    local = {k: yaml.safe_load(v) for k, v in feast_environment(Settings()).items()}
    assert local == {
        "SHOPRANK_FEAST_ONLINE_STORE": {"type": "sqlite", "path": "data/online_store.db"},
        "SHOPRANK_FEAST_REGISTRY": {
            "registry_type": "file",
            "path": "data/registry.db",
            "cache_ttl_seconds": 60,
            "serve_features_while_materializing": True,
        },
    }
    shared = Settings(
        online_store="redis_cluster",
        redis='10.0.0.1:7000,10.0.0.2:7000,password=a"b, c',
        registry="postgresql://postgres@db:5432/shoprank",
    )
    values = {k: yaml.safe_load(v) for k, v in feast_environment(shared).items()}
    assert values["SHOPRANK_FEAST_ONLINE_STORE"] == {
        "type": "redis",
        "redis_type": "redis_cluster",
        "connection_string": '10.0.0.1:7000,10.0.0.2:7000,password=a"b, c',
    }
    assert values["SHOPRANK_FEAST_REGISTRY"]["registry_type"] == "sql"
    # SQLAlchemy reads a bare postgresql:// as psycopg2, which is not installed.
    assert values["SHOPRANK_FEAST_REGISTRY"]["path"] == (
        "postgresql+psycopg://postgres@db:5432/shoprank"
    )
