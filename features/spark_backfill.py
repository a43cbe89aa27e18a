"""The backfill on Spark: the same snapshots as features.offline, computed by PySpark.

For a backfill too large for one machine. The formulas are features.engineering's,
written as Spark SQL over the whole range at once rather than a fold over windows:

- the catalog's vocabulary (the MAX_VOCABULARY tokens carried by the most items),
  inverse-carrier item vectors, L2-normalised, and the log-scaled price;
- the events validated with the same checks, in the same order, so each bad row
  is counted under the same reason;
- each event assigned to its window, the first snapshot after it; per (user,
  item, window) the summed weights, events and conversions; then each snapshot's
  running totals, one row per (user, item, snapshot) the user had touched;
- per snapshot the user vectors (sum of w_ui / |C_i| * item vector, normalised),
  the user and item biases, conversion rates and activity.

Spark aggregates and writes every snapshot into a hidden staging folder
(partitioned by snapshot, which no reader of the offline store sees); the
driver then rewrites each snapshot into the local engine's layout, one in its
memory at a time (features.offline.write_snapshot: atomic, re-runs replace). A
test holds the two engines' rows equal: exactly, but for the vectors' float
rounding.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from features.engineering import CONVERSION_PRIOR, MAX_VOCABULARY
from features.history import history_table
from features.offline import (
    BackfillReport,
    default_times,
    item_table_schema,
    snapshot_file,
    user_table_schema,
    write_item_text,
    write_snapshot,
)
from features.schema import ATTRIBUTE_SEPARATOR, CONVERSION_EVENTS, EVENT_WEIGHTS
from features.validation import EARLIEST
from features.workspace import SPARK_LOCAL, Workspace

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession


def session(conf: Sequence[tuple[str, str]]) -> SparkSession:
    """A session on conf's spark.master (default local[*]), with conf over our defaults."""
    from pyspark.sql import SparkSession

    settings = dict(conf)
    master = settings.pop("spark.master", SPARK_LOCAL)
    builder = (
        SparkSession.builder.master(master)
        .appName("shoprank-backfill")
        # Every time is UTC: the snapshots' stamps and the window arithmetic.
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.showConsoleProgress", "false")  # our own bar says where it is
    )
    if master.startswith("local"):
        # A partition per core: the default 200 are mostly empty on one machine.
        builder = builder.config("spark.sql.shuffle.partitions", str(os.cpu_count() or 2))
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def backfill_spark(
    workspace: Workspace,
    times: Sequence[datetime] | None = None,
    progress: bool = False,
) -> BackfillReport:
    """Compute and write the snapshots at `times` (default: the whole training range)."""
    from tqdm import tqdm

    started = time.perf_counter()
    times = sorted(times or default_times(workspace))
    report = BackfillReport(snapshots=list(times))
    spark = session(workspace.stores.spark)
    if progress:
        print(
            f"backfill (spark): {len(times)} snapshots on {spark.sparkContext.master}",
            file=sys.stderr,
        )
    try:
        catalog = _catalog(spark, workspace, report)
        tokens = [r["token"] for r in catalog.vocabulary.orderBy("j").collect()]
        events = _valid_events(spark, workspace, catalog.item_ids, times[-1], report)
        totals = _running_totals(events, times).cache()
        users = _user_rows(totals, catalog.vectors, len(tokens))
        snapshots = spark.range(len(times)).withColumnRenamed("id", "s")
        items = _item_rows(totals, catalog.items, snapshots)
        report.events = int(events.count())
        staging = workspace.offline_dir / ".spark-staging"
        shutil.rmtree(staging, ignore_errors=True)
        # Spark writes every snapshot at once, a folder per snapshot; the driver then
        # moves them into place one at a time, in the local engine's file layout.
        users.write.partitionBy("s").parquet(str(staging / "users"))
        items.write.partitionBy("s").parquet(str(staging / "items"))
    finally:
        spark.stop()
    try:
        bar = tqdm(
            times, desc="backfill (spark)", unit="snapshot", disable=not progress, file=sys.stderr
        )
        for index, t in enumerate(bar):
            for part, schema, directory, table in (
                ("users", user_table_schema(), workspace.user_features_path, "user_features"),
                ("items", item_table_schema(), workspace.item_features_path, "item_features"),
            ):
                rows = _snapshot(staging / part / f"s={index}", schema, t)
                write_snapshot(rows, snapshot_file(directory, t))
                report.rows[table] += rows.num_rows
        newest = snapshot_file(workspace.item_features_path, times[-1])
        catalog_ids = pq.read_table(newest, columns=["item_id"])["item_id"].to_pylist()
        history = history_table(workspace.event_files(), catalog_ids, times[-1])
        write_snapshot(history, snapshot_file(workspace.user_history_path, times[-1]))
        report.rows["user_history"] += history.num_rows
        write_item_text(workspace, times[-1], report)
        workspace.vocabulary_path.write_text(json.dumps(tokens))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    return report


def _snapshot(folder: Path, schema: pa.Schema, t: datetime) -> pa.Table:
    """One snapshot's rows as Spark wrote them (none: no folder), in the local schema."""
    names = [f.name for f in schema if f.name != "event_timestamp"]
    if folder.exists():
        found = ds.dataset(folder, format="parquet").to_table(columns=names)
    else:
        found = schema.empty_table().select(names)
    columns = {name: found[name] for name in found.column_names}
    columns["event_timestamp"] = pa.array([t] * found.num_rows, pa.timestamp("us", tz="UTC"))
    return pa.table({f.name: columns[f.name].cast(f.type) for f in schema}, schema=schema)


@dataclass(frozen=True)
class SparkCatalog:
    items: DataFrame  # item_id, item_vector (array<float>), item_price (float)
    vectors: DataFrame  # item_id, j, v (double of the float32): the non-zero entries
    vocabulary: DataFrame  # token, j
    item_ids: DataFrame  # item_id: the valid catalog


def _catalog(spark: SparkSession, workspace: Workspace, report: BackfillReport) -> SparkCatalog:
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    raw = spark.read.parquet(str(workspace.catalog_path))
    has_id = F.coalesce(F.col("item_id").isNotNull() & (F.length("item_id") > 0), F.lit(False))
    good_price = F.coalesce(F.col("price") >= 0, F.lit(True))
    counts = raw.select(
        F.sum(F.when(~has_id, 1).otherwise(0)).alias("no_id"),
        F.sum(F.when(has_id & ~good_price, 1).otherwise(0)).alias("negative"),
    ).first()
    assert counts is not None
    report.rejections.add("catalog row without item_id", int(counts["no_id"] or 0))
    report.rejections.add("negative price", int(counts["negative"] or 0))
    catalog = raw.filter(has_id & good_price).select("item_id", "price", "attributes").cache()

    separator = "\\" + ATTRIBUTE_SEPARATOR
    tokens = catalog.select(
        "item_id",
        F.explode(
            F.array_distinct(F.filter(F.split("attributes", separator), lambda t: t != ""))
        ).alias("token"),
    )
    carried = tokens.groupBy("token").agg(F.count("*").alias("carriers"))
    top = carried.orderBy(F.desc("carriers"), F.asc("token")).limit(MAX_VOCABULARY)
    vocabulary = top.withColumn("j", F.row_number().over(Window.orderBy("token")) - 1).cache()
    onehot = tokens.join(vocabulary, "token")
    weighted = onehot.select("item_id", "j", (F.lit(1.0) / F.col("carriers")).alias("w"))
    norms = weighted.groupBy("item_id").agg(F.sqrt(F.sum(F.col("w") * F.col("w"))).alias("n"))
    # The float32 entries, as the local engine keeps and multiplies them.
    vectors = (
        weighted.join(norms, "item_id")
        .select("item_id", "j", (F.col("w") / F.col("n")).cast("float").cast("double").alias("v"))
        .cache()
    )
    width = vocabulary.count()
    dense = _dense(vectors, "item_id", "j", "v", width, "item_vector")
    scaled = F.log1p(F.coalesce(F.col("price"), F.lit(0.0)))
    top_price = catalog.select(F.max(scaled).alias("top")).first()
    peak = float(top_price["top"] or 0.0) if top_price else 0.0
    price = (scaled / F.lit(peak)) if peak > 0 else scaled
    items = (
        catalog.select("item_id", price.cast("float").alias("item_price"))
        .join(dense, "item_id", "left")
        .select(
            "item_id",
            F.coalesce("item_vector", F.array_repeat(F.lit(0.0).cast("float"), int(width))).alias(
                "item_vector"
            ),
            "item_price",
        )
        .cache()
    )
    return SparkCatalog(items, vectors, vocabulary, catalog.select("item_id"))


def _dense(
    frame: DataFrame, key: str | list[str], index: str, value: str, width: int, name: str
) -> DataFrame:
    """Sparse (key, index, value) rows as one float32 array of `width` per key."""
    from pyspark.sql import functions as F

    keys = [key] if isinstance(key, str) else key
    entries = F.map_from_entries(F.collect_list(F.struct(F.col(index).cast("int"), value)))
    grouped = frame.groupBy(*keys).agg(entries.alias("m"))
    positions = F.sequence(F.lit(0), F.lit(max(0, width - 1)))
    array = F.transform(positions, lambda j: F.coalesce(F.element_at("m", j), F.lit(0.0)))
    if width == 0:
        array = F.array().cast("array<double>")
    return grouped.select(*keys, array.cast("array<float>").alias(name))


def _valid_events(
    spark: SparkSession,
    workspace: Workspace,
    items: DataFrame,
    end: datetime,
    report: BackfillReport,
) -> DataFrame:
    """The events before `end`, checked as features.validation.valid_events checks them:
    a bad row is counted under its first failing check and left out."""
    from pyspark.sql import functions as F

    latest = datetime.now(UTC) + timedelta(days=1)
    known = items.select(F.col("item_id").alias("known_item"), F.lit(True).alias("known"))
    events = (
        spark.read.parquet(*(str(f) for f in workspace.event_files()))
        .filter(F.col("ts") < F.lit(end))
        .join(F.broadcast(known), F.col("item_id") == F.col("known_item"), "left")
    )

    def present(name: str) -> Column:
        return F.col(name).isNotNull() & (F.length(name) > 0)

    checks: list[tuple[str, Column]] = [
        ("null or empty user_id", present("user_id")),
        ("null or empty item_id", present("item_id")),
        ("unknown event_type", F.col("event_type").isin(sorted(EVENT_WEIGHTS))),
        (
            "timestamp missing or out of range",
            F.col("ts").isNotNull()
            & (F.col("ts") >= F.lit(EARLIEST))
            & (F.col("ts") < F.lit(latest)),
        ),
        ("item not in catalog", F.col("known").isNotNull()),
    ]
    reason: Column = F.lit(None).cast("string")
    for name, ok in reversed(checks):
        reason = F.when(~F.coalesce(ok, F.lit(False)), F.lit(name)).otherwise(reason)
    classified = events.withColumn("reason", reason).cache()
    for row in classified.filter(F.col("reason").isNotNull()).groupBy("reason").count().collect():
        report.rejections.add(row["reason"], int(row["count"]))
    weight = F.create_map(*[F.lit(x) for pair in sorted(EVENT_WEIGHTS.items()) for x in pair])
    return classified.filter(F.col("reason").isNull()).select(
        "user_id",
        "item_id",
        "ts",
        weight[F.col("event_type")].cast("double").alias("weight"),
        F.col("event_type").isin(sorted(CONVERSION_EVENTS)).cast("double").alias("converted"),
    )


def _running_totals(events: DataFrame, times: Sequence[datetime]) -> DataFrame:
    """Per (user, item, snapshot s) the events strictly before times[s]: summed weights,
    event and conversion counts. An event joins every snapshot after it."""
    from pyspark.sql import functions as F

    stamps = F.array(*[F.lit(t) for t in times])
    # The first snapshot after the event: the number of snapshot times at or before it.
    first = F.size(F.filter(stamps, lambda t: t <= F.col("ts")))
    per_window = (
        events.withColumn("k", first)
        .groupBy("user_id", "item_id", "k")
        .agg(
            F.sum("weight").alias("w"),
            F.count("*").cast("double").alias("n"),
            F.sum("converted").alias("c"),
        )
    )
    last = len(times) - 1
    expanded = per_window.withColumn("s", F.explode(F.sequence(F.col("k"), F.lit(last))))
    return expanded.groupBy("user_id", "item_id", "s").agg(
        F.sum("w").alias("w"), F.sum("n").alias("n"), F.sum("c").alias("c")
    )


def _item_counts(totals: DataFrame) -> DataFrame:
    """|C_i| and the converting users per (item, snapshot)."""
    from pyspark.sql import functions as F

    return totals.groupBy("item_id", "s").agg(
        F.count("*").cast("double").alias("users"),
        F.sum(F.when(F.col("c") > 0, 1.0).otherwise(0.0)).alias("converting"),
    )


def _user_rows(totals: DataFrame, vectors: DataFrame, width: int) -> DataFrame:
    from pyspark.sql import functions as F

    counts = _item_counts(totals).select("item_id", "s", "users")
    inverse = totals.join(counts, ["item_id", "s"]).select(
        "user_id", "item_id", "s", (F.col("w") / F.col("users")).alias("x")
    )
    summed = (
        inverse.join(vectors, "item_id")
        .groupBy("user_id", "s", "j")
        .agg(F.sum(F.col("x") * F.col("v")).alias("v"))
    )
    norms = summed.groupBy("user_id", "s").agg(F.sqrt(F.sum(F.col("v") * F.col("v"))).alias("norm"))
    normalised = summed.join(norms, ["user_id", "s"]).select(
        "user_id",
        "s",
        "j",
        F.when(F.col("norm") > 0, F.col("v") / F.col("norm")).otherwise(0.0).alias("v"),
    )
    dense = _dense(normalised, ["user_id", "s"], "j", "v", width, "user_vector")
    per_user = totals.groupBy("user_id", "s").agg(F.sum("n").alias("n"), F.sum("c").alias("c"))
    rates = per_user.groupBy("s").agg((F.sum("c") / F.sum("n")).alias("rate"))
    prior = F.lit(CONVERSION_PRIOR)
    zeros = F.array_repeat(F.lit(0.0).cast("float"), width)
    return (
        per_user.join(rates, "s")
        .join(dense, ["user_id", "s"], "left")
        .select(
            "user_id",
            "s",
            F.coalesce("user_vector", zeros).alias("user_vector"),
            ((F.col("c") + prior * F.col("rate")) / (F.col("n") + prior))
            .cast("float")
            .alias("user_bias"),
            F.log1p("n").cast("float").alias("user_activity"),
        )
    )


def _item_rows(totals: DataFrame, items: DataFrame, snapshots: DataFrame) -> DataFrame:
    """Every catalog item at every snapshot, with the counts of the events before it."""
    from pyspark.sql import functions as F

    counts = _item_counts(totals)
    grid = (
        items.crossJoin(snapshots)
        .join(counts, ["item_id", "s"], "left")
        .fillna(0.0, ["users", "converting"])
    )
    stats = grid.groupBy("s").agg(
        F.max("users").alias("top"),
        F.sum("users").alias("all_users"),
        F.sum("converting").alias("all_converting"),
    )
    rate = F.when(F.col("all_users") > 0, F.col("all_converting") / F.col("all_users")).otherwise(
        0.0
    )
    prior = F.lit(CONVERSION_PRIOR)
    return grid.join(stats, "s").select(
        "item_id",
        "s",
        "item_vector",
        (F.log(F.lit(2.0) + F.col("users")) / F.log(F.lit(2.0) + F.col("top")))
        .cast("float")
        .alias("item_bias"),
        ((F.col("converting") + prior * rate) / (F.col("users") + prior))
        .cast("float")
        .alias("item_conversion"),
        "item_price",
    )
