from pathlib import Path

import pytest
import yaml

from features.store import repo_settings
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


def test_a_feast_variable_of_the_old_environment_is_an_unknown_setting() -> None:
    with pytest.raises(ConfigError, match="unknown setting SHOPRANK_FEAST_REGISTRY"):
        from_env({"SHOPRANK_FEAST_REGISTRY": "{registry_type: file}"})


def test_the_settings_give_the_store_sections_feast_reads() -> None:
    stores = Settings().workspace.stores
    assert {"online_store": stores.online_config(), "registry": stores.registry_config()} == {
        "online_store": {"type": "sqlite", "path": "data/online_store.db"},
        "registry": {
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
    ).workspace
    # What `features apply` writes must read back as the same values, quotes and all.
    written = yaml.safe_load(yaml.safe_dump(repo_settings(shared)))
    assert written["online_store"] == {
        "type": "redis",
        "redis_type": "redis_cluster",
        "connection_string": '10.0.0.1:7000,10.0.0.2:7000,password=a"b, c',
    }
    assert written["registry"]["registry_type"] == "sql"
    # SQLAlchemy reads a bare postgresql:// as psycopg2, which is not installed.
    assert written["registry"]["path"] == "postgresql+psycopg://postgres@db:5432/shoprank"
    assert written["project"] == "shoprank"
    assert written["offline_store"] == {"type": "duckdb"}


def test_the_offline_store_is_duckdb_or_spark_with_its_spark_settings() -> None:
    settings = from_env(
        {
            "SHOPRANK_OFFLINE_STORE": "spark",
            "SHOPRANK_SPARK_MASTER": "spark://10.0.0.9:7077",
            "SHOPRANK_SPARK_CONF": "spark.executor.memory=8g, spark.sql.shuffle.partitions=400",
        }
    )
    stores = settings.workspace.stores
    assert stores.spark == (
        ("spark.master", "spark://10.0.0.9:7077"),
        ("spark.executor.memory", "8g"),
        ("spark.sql.shuffle.partitions", "400"),
    )
    assert stores.offline_config() == {
        "type": "spark",
        "spark_conf": {
            "spark.sql.session.timeZone": "UTC",
            "spark.ui.enabled": "false",
            "spark.master": "spark://10.0.0.9:7077",
            "spark.executor.memory": "8g",
            "spark.sql.shuffle.partitions": "400",
        },
    }
    with pytest.raises(ConfigError, match="offline_store must be one of duckdb, spark, got 'bq'"):
        from_env({"SHOPRANK_OFFLINE_STORE": "bq"})
    with pytest.raises(ConfigError, match=r"spark_conf entry 'spark.executor.memory' is not key="):
        from_env({"SHOPRANK_SPARK_CONF": "spark.executor.memory"})


def test_tls_takes_a_certificate_and_its_key_and_mtls_needs_tls() -> None:
    with pytest.raises(ConfigError, match=r"^tls_cert and tls_key go together"):
        from_env({"SHOPRANK_TLS_CERT": "server.pem"})
    with pytest.raises(ConfigError, match=r"^tls_client_ca needs tls_cert and tls_key"):
        from_env({"SHOPRANK_TLS_CLIENT_CA": "ca.pem"})
    both = from_env({"SHOPRANK_TLS_CERT": "s.pem", "SHOPRANK_TLS_KEY": "s.key"})
    assert (both.tls_cert, both.tls_key, both.tls_client_ca) == ("s.pem", "s.key", "")


def test_the_log_format_is_text_or_json() -> None:
    assert from_env({"SHOPRANK_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(ConfigError, match="log_format must be text or json, got 'xml'"):
        from_env({"SHOPRANK_LOG_FORMAT": "xml"})
