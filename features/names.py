"""Every Feast name shoprank uses, spelled once: entities, views, features, services.

The Feast repo's definitions, the jobs that write and read the views, the
model's recorded inputs and the server all take their names from here, so a
rename is one edit and a typo is an import error, not an empty read.
"""

from __future__ import annotations

from typing import Final

USER_KEY: Final = "user_id"
ITEM_KEY: Final = "item_id"

USER_VIEW: Final = "user_features"
ITEM_VIEW: Final = "item_features"
USER_EMBEDDING_VIEW: Final = "user_embeddings"
ITEM_EMBEDDING_VIEW: Final = "item_embeddings"
# Written by the stream worker only (features.stream_worker): no batch table feeds it.
USER_RECENT_VIEW: Final = "user_recent_items"
EMBEDDING_VIEWS: Final = (USER_EMBEDDING_VIEW, ITEM_EMBEDDING_VIEW)
# What each user bought (or rated): the buy-exclusion rule's, not a ranker input.
USER_HISTORY_VIEW: Final = "user_history"
# Each item's text embedded by the language model (features.item_text): semantic search's.
ITEM_TEXT_VIEW: Final = "item_text"

# Each view's features, in the order its schema lists them.
USER_FEATURES: Final = ("user_vector", "user_bias", "user_activity")
ITEM_FEATURES: Final = ("item_vector", "item_bias", "item_conversion", "item_price")
USER_EMBEDDING: Final = "user_embedding"
RECENT_ITEMS: Final = "recent_items"
INTERACTED_ITEMS: Final = "interacted_items"
ITEM_EMBEDDING: Final = "item_embedding"
TEXT_VECTOR: Final = "text_vector"

# The FeatureService a model records and is checked against at start-up.
RANKER_SERVICE: Final = "ranker_v1"  # user and item features
EMBEDDING_RANKER_SERVICE: Final = "ranker_v2"  # ... and the learned embeddings


def refs(view: str, features: tuple[str, ...]) -> tuple[str, ...]:
    """Feast's "view:feature" references."""
    return tuple(f"{view}:{name}" for name in features)


USER_REFS: Final = refs(USER_VIEW, USER_FEATURES)
ITEM_REFS: Final = refs(ITEM_VIEW, ITEM_FEATURES)
USER_EMBEDDING_REFS: Final = refs(USER_EMBEDDING_VIEW, (USER_EMBEDDING,))
ITEM_EMBEDDING_REFS: Final = refs(ITEM_EMBEDDING_VIEW, (ITEM_EMBEDDING,))


def feature_service(embeddings: bool) -> str:
    return EMBEDDING_RANKER_SERVICE if embeddings else RANKER_SERVICE
