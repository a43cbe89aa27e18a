"""A seeded synthetic e-commerce data set with signal a ranker can find.

Users have latent tastes over categories, brands and price bands; items have
Zipf popularity. Each session is search -> views -> carts -> purchases within
one category the user likes. Events are generated a chunk of users at a time
and streamed to parquet, so millions of events need memory for one chunk only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from features import taxonomy
from features.prepare import Manifest, split_by_time, write_dataset
from features.schema import CATALOG_SCHEMA, EVENTS_SCHEMA, USERS_SCHEMA, join_attributes
from features.workspace import Workspace

START = datetime(2026, 1, 1, tzinfo=UTC)
PRICE_BANDS = 5


@dataclass(frozen=True)
class SyntheticSpec:
    users: int = 2000
    items: int = 1000
    days: int = 30
    seed: int = 7
    categories: int = 20
    brands: int = 60
    tags: int = 40
    # Share of the days at the end whose events are held out for evaluation.
    holdout_share: float = 0.2
    users_per_chunk: int = 5000

    @property
    def split_ts(self) -> datetime:
        train_days = max(1, round(self.days * (1.0 - self.holdout_share)))
        return START + timedelta(days=train_days)

    @property
    def end_ts(self) -> datetime:
        return START + timedelta(days=self.days)


@dataclass(frozen=True)
class Catalog:
    item_ids: list[str]
    category: np.ndarray  # int, per item
    brand: np.ndarray
    price_band: np.ndarray
    popularity: np.ndarray  # float, sums to 1
    table: pa.Table


def make_catalog(spec: SyntheticSpec) -> Catalog:
    rng = np.random.default_rng([spec.seed, 1])
    n = spec.items
    category = rng.integers(0, spec.categories, size=n)
    # Each brand sells in a couple of categories, so brand and category correlate.
    brand_home = rng.integers(0, spec.categories, size=spec.brands)
    brand = np.empty(n, dtype=np.int64)
    for c in range(spec.categories):
        members = np.flatnonzero(category == c)
        local = np.flatnonzero(brand_home == c)
        pool = local if local.size else np.arange(spec.brands)
        mixed = rng.random(members.size) < 0.8
        brand[members] = np.where(
            mixed, rng.choice(pool, size=members.size), rng.integers(0, spec.brands, members.size)
        )
    base_price = np.exp(rng.normal(3.0, 0.8, size=spec.categories))
    price = np.round(base_price[category] * np.exp(rng.normal(0.0, 0.5, size=n)), 2)
    edges = np.quantile(price, np.linspace(0, 1, PRICE_BANDS + 1)[1:-1])
    price_band = np.searchsorted(edges, price, side="right")
    ranks = rng.permutation(n) + 1
    popularity = 1.0 / ranks.astype(np.float64)
    popularity /= popularity.sum()
    item_ids = [f"item_{i:06d}" for i in range(n)]
    attributes, titles = [], []
    # Titles draw from their own stream, so the catalogue's other draws (and so every
    # event) are what they were before titles had words.
    wording = np.random.default_rng([spec.seed, 5])
    for i in range(n):
        tags = rng.choice(spec.tags, size=int(rng.integers(1, 4)), replace=False)
        kind = taxonomy.category(int(category[i]))
        tokens = [f"category={taxonomy.token(kind.name)}"]
        tokens.append(f"brand={taxonomy.token(taxonomy.brand(int(brand[i])))}")
        tokens += [f"tag={taxonomy.token(taxonomy.tag(int(t)))}" for t in sorted(tags)]
        tokens.append(f"price_band={price_band[i]}")
        attributes.append(join_attributes(tokens))
        noun = kind.nouns[int(wording.integers(0, len(kind.nouns)))]
        adjective = taxonomy.tag(int(tags[0]))
        titles.append(f"{taxonomy.brand(int(brand[i]))} {adjective} {noun}".title())
    table = pa.Table.from_pydict(
        {
            "item_id": item_ids,
            "title": titles,
            "price": price.tolist(),
            "attributes": attributes,
        },
        schema=CATALOG_SCHEMA,
    )
    return Catalog(item_ids, category, brand, price_band, popularity, table)


def make_users(spec: SyntheticSpec) -> pa.Table:
    rng = np.random.default_rng([spec.seed, 2])
    ages = ["18-24", "25-34", "35-44", "45-54", "55+"]
    regions = ["north", "south", "east", "west"]
    attributes = [
        join_attributes([f"age={ages[a]}", f"region={regions[r]}"])
        for a, r in zip(
            rng.integers(0, len(ages), spec.users),
            rng.integers(0, len(regions), spec.users),
            strict=True,
        )
    ]
    ids = [f"user_{u:06d}" for u in range(spec.users)]
    return pa.Table.from_pydict({"user_id": ids, "attributes": attributes}, schema=USERS_SCHEMA)


class _Sampler:
    """Draws items within a category, by popularity or from a favourite brand."""

    def __init__(self, catalog: Catalog, spec: SyntheticSpec) -> None:
        self.by_category: list[np.ndarray] = []
        self.cumulative: list[np.ndarray] = []
        self.by_category_brand: dict[tuple[int, int], np.ndarray] = {}
        for c in range(spec.categories):
            members = np.flatnonzero(catalog.category == c)
            self.by_category.append(members)
            self.cumulative.append(np.cumsum(catalog.popularity[members]))
        for i, (c, b) in enumerate(zip(catalog.category, catalog.brand, strict=True)):
            key = (int(c), int(b))
            self.by_category_brand.setdefault(key, np.empty(0, dtype=np.int64))
            self.by_category_brand[key] = np.append(self.by_category_brand[key], i)

    def draw(self, rng: np.random.Generator, category: int, brands: np.ndarray) -> int:
        if rng.random() < 0.5:
            for b in rng.permutation(brands):
                pool = self.by_category_brand.get((category, int(b)))
                if pool is not None and pool.size:
                    return int(rng.choice(pool))
        members = self.by_category[category]
        if members.size == 0:
            return -1
        cumulative = self.cumulative[category]
        pick = np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")
        return int(members[min(pick, members.size - 1)])


def generate_events(spec: SyntheticSpec, catalog: Catalog) -> Iterator[pa.Table]:
    """Event tables, one per chunk of users, in EVENTS_SCHEMA."""
    sampler = _Sampler(catalog, spec)
    for first in range(0, spec.users, spec.users_per_chunk):
        users = range(first, min(first + spec.users_per_chunk, spec.users))
        yield _chunk_events(spec, catalog, sampler, users)


def _chunk_events(
    spec: SyntheticSpec, catalog: Catalog, sampler: _Sampler, users: range
) -> pa.Table:
    columns: dict[str, list[object]] = {name: [] for name in EVENTS_SCHEMA.names}
    horizon_s = spec.days * 86400.0
    for u in users:
        rng = np.random.default_rng([spec.seed, 3, u])
        wording = np.random.default_rng([spec.seed, 4, u])  # queries: their own stream
        taste = rng.dirichlet(np.full(spec.categories, 0.3))
        favourite_brands = rng.choice(spec.brands, size=3, replace=False)
        preferred_band = int(rng.integers(0, PRICE_BANDS))
        sessions = rng.poisson(spec.days / 3.0 * rng.lognormal(0.0, 0.6))
        for s in range(max(1, sessions)):
            t0 = rng.random() * horizon_s
            category = int(rng.choice(spec.categories, p=taste))
            session = f"u{u}s{s}"
            _session(
                rng,
                u,
                session,
                t0,
                category,
                favourite_brands,
                preferred_band,
                catalog,
                sampler,
                columns,
                wording,
            )
    columns["ts"] = [START + timedelta(seconds=float(str(x))) for x in columns["ts"]]
    return pa.Table.from_pydict(columns, schema=EVENTS_SCHEMA)


def _session(
    rng: np.random.Generator,
    user: int,
    session: str,
    t0: float,
    category: int,
    favourite_brands: np.ndarray,
    preferred_band: int,
    catalog: Catalog,
    sampler: _Sampler,
    out: dict[str, list[object]],
    wording: np.random.Generator,
) -> None:
    t = t0

    def emit(item: int, event_type: str, query: str | None = None) -> None:
        out["user_id"].append(f"user_{user:06d}")
        out["item_id"].append(catalog.item_ids[item])
        out["event_type"].append(event_type)
        out["ts"].append(t)
        out["session_id"].append(session)
        out["query"].append(query)

    views = int(rng.integers(1, 6))
    for v in range(views):
        item = sampler.draw(rng, category, favourite_brands)
        if item < 0:
            return
        if v == 0:
            emit(item, "search", search_query(wording, category, int(catalog.brand[item])))
            t += float(rng.exponential(20.0))
        emit(item, "view")
        t += float(rng.exponential(60.0))
        affinity = 0.15
        affinity += 0.25 * bool(np.isin(catalog.brand[item], favourite_brands))
        affinity += 0.2 * (catalog.price_band[item] == preferred_band)
        if rng.random() < affinity:
            emit(item, "cart")
            t += float(rng.exponential(30.0))
            if rng.random() < 0.6:
                emit(item, "purchase")
                t += float(rng.exponential(30.0))


def search_query(rng: np.random.Generator, category: int, brand: int) -> str:
    """What a shopper types for a category: its name or, as often, a synonym that
    shares no word with it ("sneakers" for running shoes); a fifth add the brand."""
    kind = taxonomy.category(category)
    words = kind.name if rng.random() < 0.5 else str(rng.choice(list(kind.synonyms)))
    if rng.random() < 0.2:
        words = f"{taxonomy.brand(brand)} {words}"
    return words.lower()


def prepare(workspace: Workspace, spec: SyntheticSpec) -> Manifest:
    """Generate the data set into the workspace; events from split_ts on are held out."""
    catalog = make_catalog(spec)
    chunks = (split_by_time(chunk, spec.split_ts) for chunk in generate_events(spec, catalog))
    params = {
        "users": spec.users,
        "items": spec.items,
        "days": spec.days,
        "seed": spec.seed,
    }
    return write_dataset(
        workspace, "synthetic", catalog.table, make_users(spec), chunks, spec.split_ts, params
    )
