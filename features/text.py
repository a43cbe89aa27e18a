"""Item text and query terms: the one tokenizer the lexical index and queries share.

An item's searchable text is its title and the values of its text attributes
(category, brand, department, type, tags, genres); numeric bands are not words.
Text is lowercased and split into runs of Unicode word characters, so "Café"
is one term, "sci-fi" is two, and emoji and punctuation are no terms at all.
English stop words are dropped, so a query of only stop words has no terms.
"""

from __future__ import annotations

import re
from typing import Final

from features.schema import split_attributes

# Attribute keys whose values are words worth searching.
TEXT_KEYS: Final = frozenset(
    {"category", "brand", "department", "type", "tag", "genre", "commodity", "sub_commodity"}
)
# The attribute a diversity cap counts by, the first an item carries in this order.
CATEGORY_KEYS: Final = ("category", "genre", "department")
NO_CATEGORY: Final = ""

WORD: Final = re.compile(r"[^\W_]+", re.UNICODE)
# A short, standard English list (the classic Lucene/Elasticsearch set): words
# that match nearly every title and carry no intent.
STOP_WORDS: Final = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
    ]
)


def terms(text: str) -> list[str]:
    """The searchable terms of a text, in order, repeats kept (BM25 counts them)."""
    return [word for word in WORD.findall(text.lower()) if word not in STOP_WORDS]


def query_key(text: str) -> str:
    """A query as the language model reads it: lowercased, whitespace collapsed (its
    tokenizer lowercases too), so the spellings of one query share one vector."""
    return " ".join(text.lower().split())


def item_text(title: str | None, attributes: str) -> str:
    """Title, then the text attributes' values, space-separated."""
    parts = [title or ""]
    for token in split_attributes(attributes):
        key, _, value = token.partition("=")
        if key in TEXT_KEYS:
            parts.append(value.replace("_", " "))
    return " ".join(part for part in parts if part)


def category_of(attributes: str) -> str:
    """The item's category for diversity: the first of CATEGORY_KEYS it carries."""
    values: dict[str, str] = {}
    for token in split_attributes(attributes):
        key, _, value = token.partition("=")
        values.setdefault(key, value)
    return next((values[key] for key in CATEGORY_KEYS if key in values), NO_CATEGORY)
