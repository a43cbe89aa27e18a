"""shoprank's Feast definitions. `feast apply` imports every .py here: definitions only."""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.data_format import ParquetFormat
from feast.types import Array, Float32, String
from feast.value_type import ValueType

from features import names as n

# Feature rows never expire: a snapshot stays the latest until the next lands.
NO_EXPIRY = timedelta(days=0)

# The shopper the ranking is for; MovieLens UserID, household_id or user_000042.
user = Entity(name="user", join_keys=[n.USER_KEY], value_type=ValueType.STRING)

# A catalog item; movie title, product_id or item_000042.
item = Entity(name="item", join_keys=[n.ITEM_KEY], value_type=ValueType.STRING)

# One parquet file per snapshot; paths are relative to this repo folder.
user_source = FileSource(
    name="user_features_source",
    path="offline/user_features/*.parquet",
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
)

item_source = FileSource(
    name="item_features_source",
    path="offline/item_features/*.parquet",
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
)

# Interest vector (inverse-frequency weighted item vectors), bias, activity.
user_features = FeatureView(
    name=n.USER_VIEW,
    entities=[user],
    ttl=NO_EXPIRY,
    schema=[
        Field(name="user_vector", dtype=Array(Float32)),
        Field(name="user_bias", dtype=Float32),
        Field(name="user_activity", dtype=Float32),
    ],
    source=user_source,
)

# Attribute vector, smoothed popularity bias, conversion rate, scaled price.
item_features = FeatureView(
    name=n.ITEM_VIEW,
    entities=[item],
    ttl=NO_EXPIRY,
    schema=[
        Field(name="item_vector", dtype=Array(Float32)),
        Field(name="item_bias", dtype=Float32),
        Field(name="item_conversion", dtype=Float32),
        Field(name="item_price", dtype=Float32),
    ],
    source=item_source,
)

user_embeddings_source = FileSource(
    name="user_embeddings_source",
    path="offline/user_embeddings/*.parquet",
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
)

item_embeddings_source = FileSource(
    name="item_embeddings_source",
    path="offline/item_embeddings/*.parquet",
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
)

# Learned by training (matrix factorization on training interactions) and published back.
user_embeddings = FeatureView(
    name=n.USER_EMBEDDING_VIEW,
    entities=[user],
    ttl=NO_EXPIRY,
    schema=[Field(name=n.USER_EMBEDDING, dtype=Array(Float32))],
    source=user_embeddings_source,
)

# The item side of the same factorization: score(u, i) = user_embedding . item_embedding.
item_embeddings = FeatureView(
    name=n.ITEM_EMBEDDING_VIEW,
    entities=[item],
    ttl=NO_EXPIRY,
    schema=[Field(name=n.ITEM_EMBEDDING, dtype=Array(Float32))],
    source=item_embeddings_source,
)

# Written by the stream worker (`shoprank features stream`) as events arrive; the
# files exist only where someone exports them, so no batch job reads this source.
user_recent_items_source = FileSource(
    name="user_recent_items_source",
    path="offline/user_recent_items/*.parquet",
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
)

# The user's last distinct items, newest first: for the ranker's sequential inputs.
user_recent_items = FeatureView(
    name=n.USER_RECENT_VIEW,
    entities=[user],
    ttl=NO_EXPIRY,
    schema=[Field(name=n.RECENT_ITEMS, dtype=Array(String))],
    source=user_recent_items_source,
)

user_history_source = FileSource(
    name="user_history_source",
    path="offline/user_history/*.parquet",
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
)

# The items each user bought (or rated, on MovieLens), as of the newest snapshot:
# the server leaves them out of retrieval (features.history writes it).
user_history = FeatureView(
    name=n.USER_HISTORY_VIEW,
    entities=[user],
    ttl=NO_EXPIRY,
    schema=[Field(name=n.INTERACTED_ITEMS, dtype=Array(String))],
    source=user_history_source,
)

item_text_source = FileSource(
    name="item_text_source",
    path="offline/item_text/*.parquet",
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
)

# Each item's title and text attributes embedded by all-MiniLM-L6-v2 (unit length,
# 384 floats): the server's semantic search reads it (features.item_text writes it).
item_text = FeatureView(
    name=n.ITEM_TEXT_VIEW,
    entities=[item],
    ttl=NO_EXPIRY,
    schema=[Field(name=n.TEXT_VECTOR, dtype=Array(Float32))],
    source=item_text_source,
)

# What ranker v1 consumes; a model records this name and is checked against it.
ranker_v1 = FeatureService(name=n.RANKER_SERVICE, features=[user_features, item_features])

# Ranker v2 adds the learned embeddings.
ranker_v2 = FeatureService(
    name=n.EMBEDDING_RANKER_SERVICE,
    features=[user_features, item_features, user_embeddings, item_embeddings],
)
