"""A real Feast repo, applied and materialized into real SQLite."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from features import names, store
from features.workspace import Workspace
from server.sources.feast_provider import FeastFeatures
from training.evaluate import latest_rows


def test_online_values_equal_the_newest_offline_rows(workspace: Workspace) -> None:
    users = latest_rows(str(workspace.user_features_path), "user_id")
    items = latest_rows(str(workspace.item_features_path), "item_id")
    features = FeastFeatures(workspace)
    features.load()
    for user_id in users.index[:50]:
        online = features.users([user_id])[0]
        expected = users.loc[user_id]
        assert online.known
        np.testing.assert_array_equal(
            online.vector, np.asarray(expected["user_vector"], np.float32)
        )
        assert online.bias == pytest.approx(float(expected["user_bias"]), abs=0)
        assert online.activity == pytest.approx(float(expected["user_activity"]), abs=0)
        assert online.timestamp == expected["event_timestamp"].timestamp()
    fetched = features.items(list(items.index))
    assert fetched.known.all()
    np.testing.assert_array_equal(
        fetched.vectors, np.stack(items["item_vector"]).astype(np.float32)
    )
    np.testing.assert_array_equal(fetched.bias, items["item_bias"].to_numpy(np.float32))
    np.testing.assert_array_equal(fetched.conversion, items["item_conversion"].to_numpy(np.float32))
    np.testing.assert_array_equal(fetched.price, items["item_price"].to_numpy(np.float32))


def test_unknown_entities_come_back_unknown_not_dropped(workspace: Workspace) -> None:
    features = FeastFeatures(workspace)
    features.load()
    assert not features.users(["no-such-user"])[0].known
    fetched = features.items(["no-such-item", "item_000001", "no-such-item-2"])
    assert fetched.known.tolist() == [False, True, False]
    assert fetched.vectors[0].tolist() == [0.0] * fetched.vectors.shape[1]


def test_the_feature_service_names_what_the_ranker_consumes(workspace: Workspace) -> None:
    features = FeastFeatures(workspace)
    features.load()
    from features.model_inputs import FEAST_FEATURES

    assert features.service_refs(names.RANKER_SERVICE) == set(FEAST_FEATURES)


def test_materialize_writes_a_version_marker_with_entity_counts(workspace: Workspace) -> None:
    import json

    # The newest materialization is training's: it publishes the embeddings.
    body = json.loads(store.marker_path(workspace).read_text())
    users = pq.read_table(workspace.user_embeddings_path)["user_id"]
    assert body["counts"] == {"user_embeddings": len(users), "item_embeddings": 200}
    assert body["version"] > 0


def test_published_embeddings_come_back_online_value_for_value(workspace: Workspace) -> None:
    users = pq.read_table(workspace.user_embeddings_path).to_pylist()
    items = pq.read_table(workspace.item_embeddings_path).to_pylist()
    features = FeastFeatures(workspace)
    features.load()
    features.enable_embeddings()
    for row in users[:20]:
        online = features.users([row["user_id"]])[0].embedding
        assert online is not None
        np.testing.assert_array_equal(online, np.asarray(row["user_embedding"], np.float32))
    ids = [row["item_id"] for row in items]
    expected = np.asarray([row["item_embedding"] for row in items], np.float32)
    fetched = features.items(ids)
    assert fetched.embeddings is not None
    np.testing.assert_array_equal(fetched.embeddings, expected)
    np.testing.assert_array_equal(features.items_via_sdk(ids).embeddings, expected)
