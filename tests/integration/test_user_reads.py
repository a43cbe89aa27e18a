"""The one-read user path equals Feast's get_online_features, value for value."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from features.online_layout import EntityKeys, feature_field, redis_client
from features.rows import UserRow
from features.store import sqlite_online_path
from features.workspace import Workspace
from server.sources.feast_provider import FeastFeatures
from server.sources.user_reads import MMAP_BYTES, SqliteUserReads


def assert_same_user(fast: UserRow, sdk: UserRow) -> None:
    assert fast.known == sdk.known
    np.testing.assert_array_equal(fast.vector, sdk.vector)
    assert (fast.bias, fast.activity, fast.timestamp) == (sdk.bias, sdk.activity, sdk.timestamp)


def user_ids(workspace: Workspace, n: int) -> list[str]:
    ids: list[str] = pq.read_table(workspace.user_embeddings_path)["user_id"].to_pylist()
    return ids[:n]


def check_equal_to_the_sdk(features: FeastFeatures, workspace: Workspace) -> None:
    """Users with and without features, an unknown one and a repeat, in one read."""
    wanted = [*user_ids(workspace, 20), "no-such-user", "user_000001", "user_000001"]
    fast = features.users(wanted)
    assert [u.known for u in fast] == [True] * 20 + [False, True, True]
    for user_id, row in zip(wanted, fast, strict=True):
        assert_same_user(row, features.user_via_sdk(user_id))
        assert_same_user(asyncio.run(features.user(user_id)), row)
    # The embeddings view comes back in the same read, equal to the SDK's.
    refs = ["user_embeddings:user_embedding"]
    sdk = features.store.get_online_features(
        features=refs, entity_rows=[{"user_id": u} for u in wanted]
    ).to_dict()["user_embedding"]
    for row, expected in zip(fast, sdk, strict=True):
        assert row.embedding is not None
        np.testing.assert_array_equal(row.embedding, np.asarray(expected or [], np.float32))


def test_sqlite_user_reads_equal_the_sdk(workspace: Workspace) -> None:
    features = FeastFeatures(workspace)
    features.load()
    features.enable_embeddings()
    assert isinstance(features._user_reads, SqliteUserReads)
    check_equal_to_the_sdk(features, workspace)
    # ... through a read-only memory map of the store.
    conn = features._user_reads._connection()
    assert conn.execute("PRAGMA mmap_size").fetchone() == (MMAP_BYTES,)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("CREATE TABLE written_by_a_reader (a)")


def test_a_user_read_does_not_wait_for_a_materialization_writing(workspace: Workspace) -> None:
    features = FeastFeatures(workspace)
    features.load()
    reads = features._user_reads
    assert isinstance(reads, SqliteUserReads)
    path = sqlite_online_path(features.store.config)
    assert path is not None
    users = user_ids(workspace, 3)
    before = reads.read(users)
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        assert writer.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        # The lock a commit takes: in the rollback journal, readers fail after
        # their 5 s busy timeout; in WAL they read the last committed rows.
        writer.execute("BEGIN EXCLUSIVE")
        writer.execute("UPDATE shoprank_user_features SET value = x''")
        assert reads.read(users) == before
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_the_entity_key_is_feasts_own_encoding() -> None:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    keys = EntityKeys("user_id", 3)
    for value in ("user_000001", "", "ü-ñ", "x" * 300):
        proto = EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=value)])
        assert keys.key(value) == serialize_entity_key(proto, entity_key_serialization_version=3)


def test_the_redis_field_is_feasts_own_hash() -> None:
    from feast.infra.online_stores.helpers import _mmh3

    for ref in ("user_features:user_vector", "user_embeddings:user_embedding", "a:b"):
        view, feature = ref.split(":")
        assert feature_field(view, feature) == _mmh3(ref)


def test_a_redis_connection_string_is_read_as_feast_reads_it() -> None:
    client = redis_client("redis", "127.0.0.1:6390,db=3,password=secret,ssl=false")
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"]) == (
        "127.0.0.1",
        6390,
        3,
        "secret",
    )
    assert kwargs["socket_timeout"] == 1.0  # a hung store fails the call, never hangs it


def test_an_unreadable_sqlite_store_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    from server.errors import FeatureStoreUnavailable
    from server.sources.user_reads import UserView

    reads = SqliteUserReads(
        tmp_path / "missing.db",
        "shoprank",
        [UserView("user_features", ("user_vector",))],
        EntityKeys("user_id", 3),
    )
    with pytest.raises(FeatureStoreUnavailable, match=r"missing\.db"):
        reads.read(["user_000001"])
    with pytest.raises(FeatureStoreUnavailable, match=r"missing\.db"):
        reads.read_one("user_000001")


def test_a_float_list_is_read_from_its_packed_bytes_exactly() -> None:
    from feast.protos.feast.types.Value_pb2 import FloatList, Value

    from server.sources.feast_provider import float_list

    rng = np.random.default_rng(3)
    for n in (0, 1, 31, 32, 125, 1000):  # lengths across varint widths of the byte count
        sent = Value(float_list_val=FloatList(val=rng.random(n).astype(np.float32).tolist()))
        value = Value.FromString(sent.SerializeToString())
        expected = np.asarray(value.float_list_val.val, np.float32)
        assert np.array_equal(float_list(value), expected)


def test_a_sqlite_store_under_a_path_with_uri_characters_is_read(
    workspace: Workspace, tmp_path: Path
) -> None:
    import shutil

    from server.sources.user_reads import UserView

    odd = tmp_path / "a b?c#d"
    odd.mkdir()
    shutil.copy(workspace.repo_dir / "data" / "online_store.db", odd / "online.db")
    views = [UserView("user_features", ("user_vector", "user_bias", "user_activity"))]
    here = SqliteUserReads(odd / "online.db", "shoprank", views, EntityKeys("user_id", 3))
    (rows,) = here.read(["user_000001"])
    assert rows[0] is not None and set(rows[0][0]) == {"user_vector", "user_bias", "user_activity"}


def test_value_bytes_read_floats_exactly_as_protobuf_and_refuse_other_shapes() -> None:
    from feast.protos.feast.types.Value_pb2 import FloatList, Value

    from server.sources.value_bytes import packed_floats, single_float

    rng = np.random.default_rng(4)
    for n in (1, 31, 32, 125, 1000, 5000):  # the byte counts' varints take 1 to 3 bytes
        raw = Value(
            float_list_val=FloatList(val=rng.random(n).astype(np.float32).tolist())
        ).SerializeToString()
        expected = np.asarray(Value.FromString(raw).float_list_val.val, np.float32)
        got = packed_floats(raw)
        assert got is not None and got.dtype == np.float32
        assert np.array_equal(got, expected)
        assert packed_floats(raw[:-1]) is None  # cut short
        assert packed_floats(raw + b"\0") is None  # trailing bytes
    for number in (0.0, -0.0, 1.5, 3.4e38, float(np.float32(0.1))):
        raw = Value(float_val=number).SerializeToString()
        assert single_float(raw) == Value.FromString(raw).float_val
    assert single_float(Value(double_val=1.5).SerializeToString()) is None
    assert single_float(None) is None
    assert packed_floats(Value(float_list_val=FloatList()).SerializeToString()) is None  # empty
    assert packed_floats(Value(float_val=1.0).SerializeToString()) is None
    assert packed_floats(None) is None
