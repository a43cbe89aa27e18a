"""The workspace's table schemas, shared by every data set.

Every data set (synthetic, Complete Journey, MovieLens-1M) is mapped to these
three tables, so the feature pipeline never knows where its data came from.
Attributes are ``key=value`` tokens joined by ``|``; each distinct token is
one dimension of the item (or user) attribute vocabulary.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

ATTRIBUTE_SEPARATOR: Final = "|"

CATALOG_SCHEMA: Final = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        # Price in the data set's currency; null where the source has none.
        pa.field("price", pa.float64()),
        pa.field("attributes", pa.string(), nullable=False),
    ]
)

USERS_SCHEMA: Final = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("attributes", pa.string(), nullable=False),
    ]
)

EVENTS_SCHEMA: Final = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("session_id", pa.string()),
        # The search query for "search" events; null otherwise.
        pa.field("query", pa.string()),
    ]
)

# How much one event of each type says about a user's interest. A rating is
# an explicit choice, as strong as a purchase (MovieLens has nothing else).
EVENT_WEIGHTS: Final[dict[str, float]] = {
    "search": 0.5,
    "view": 1.0,
    "cart": 2.0,
    "purchase": 3.0,
    "rate": 3.0,
}

# Events that count as positives for training and evaluation.
POSITIVE_EVENTS: Final = frozenset({"cart", "purchase", "rate"})
# Events that count as conversions in the item and user bias.
CONVERSION_EVENTS: Final = frozenset({"purchase", "rate"})


def split_attributes(attributes: str) -> list[str]:
    """The tokens of an attribute string, without empties."""
    return [token for token in attributes.split(ATTRIBUTE_SEPARATOR) if token]


def join_attributes(tokens: list[str]) -> str:
    return ATTRIBUTE_SEPARATOR.join(tokens)
