"""The synthetic catalogue's words: a fixed product taxonomy with synonyms.

Each category has a name (what an item's category attribute says), the synonyms
shoppers search with instead (which BM25 cannot match and a language model can),
and the nouns its titles use. Brands are made-up names; tags are adjectives.
Everything is a pure function of an index, so a seed gives the same catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Category:
    name: str
    synonyms: tuple[str, ...]
    nouns: tuple[str, ...]


TAXONOMY: Final = (
    Category("running shoes", ("sneakers", "trainers", "athletic footwear"), ("runner", "racer")),
    Category("tee shirts", ("tees", "tops"), ("tee", "crew neck")),
    Category("jeans", ("denim trousers", "denims"), ("jeans", "straight leg")),
    Category("headphones", ("earphones", "earbuds", "headset"), ("headphones", "buds")),
    Category("laptops", ("notebook computers", "ultrabooks"), ("laptop", "notebook")),
    Category("smartphones", ("mobile phones", "cell phones"), ("phone", "handset")),
    Category("coffee makers", ("espresso machines", "coffee brewers"), ("brewer", "drip maker")),
    Category("backpacks", ("rucksacks", "daypacks"), ("pack", "backpack")),
    Category("wristwatches", ("watches", "timepieces"), ("watch", "chronograph")),
    Category("sunglasses", ("shades", "sunnies"), ("aviators", "sunglasses")),
    Category("sofas", ("couches", "settees"), ("sofa", "loveseat")),
    Category("desk lamps", ("reading lights", "table lights"), ("lamp", "task light")),
    Category("blenders", ("smoothie makers", "food processors"), ("blender", "mixer")),
    Category("dresses", ("gowns", "frocks"), ("dress", "maxi")),
    Category("jackets", ("coats", "parkas", "anoraks"), ("jacket", "shell")),
    Category("bath towels", ("washcloths", "bath sheets"), ("towel", "towel set")),
    Category("mugs", ("coffee cups", "tea cups"), ("mug", "tumbler")),
    Category("digital cameras", ("camcorders", "dslr"), ("camera", "mirrorless")),
    Category("bicycles", ("bikes", "cycles"), ("bike", "roadster")),
    Category("vacuum cleaners", ("hoovers", "vacuums"), ("vacuum", "cleaner")),
    Category("perfumes", ("fragrances", "colognes"), ("eau de parfum", "scent")),
    Category("board games", ("tabletop games", "family games"), ("game", "strategy game")),
    Category("yoga mats", ("exercise mats", "fitness mats"), ("mat", "yoga mat")),
    Category("cookware", ("pots and pans", "saucepans"), ("skillet", "pan set")),
)

_PREFIXES: Final = (
    "Al", "Bel", "Cor", "Dra", "El", "Fen", "Gal", "Hal", "Ir", "Jun", "Kel", "Lum",
    "Mir", "Nor", "Or", "Pel", "Quin", "Ros", "Sol", "Tor", "Ul", "Val", "Wil", "Zen",
)  # fmt: skip
_SUFFIXES: Final = ("a", "on", "ix", "ora", "en", "is", "ex", "ar")

TAGS: Final = (
    "waterproof", "lightweight", "organic", "vintage", "wireless", "compact", "premium",
    "classic", "slim", "rugged", "recycled", "handmade", "ergonomic", "foldable",
    "breathable", "insulated", "portable", "durable", "minimalist", "deluxe", "cordless",
    "stainless", "cotton", "leather", "bamboo", "ceramic", "modern", "retro", "quiet",
    "smart", "padded", "reflective", "adjustable", "washable", "lined", "matte",
    "glossy", "oversized", "petite", "sporty",
)  # fmt: skip


def category(index: int) -> Category:
    """Past the taxonomy's end, its categories again with a number ("jeans 2")."""
    base = TAXONOMY[index % len(TAXONOMY)]
    lap = index // len(TAXONOMY)
    if not lap:
        return base
    return Category(
        f"{base.name} {lap + 1}",
        tuple(f"{s} {lap + 1}" for s in base.synonyms),
        base.nouns,
    )


def brand(index: int) -> str:
    name = _PREFIXES[index % len(_PREFIXES)] + _SUFFIXES[(index // len(_PREFIXES)) % len(_SUFFIXES)]
    lap = index // (len(_PREFIXES) * len(_SUFFIXES))
    return f"{name}{lap + 1}" if lap else name


def tag(index: int) -> str:
    lap = index // len(TAGS)
    return TAGS[index % len(TAGS)] + (f" {lap + 1}" if lap else "")


def token(value: str) -> str:
    """An attribute value: spaces become underscores (features.text reads them back)."""
    return value.lower().replace(" ", "_")
