"""HQ's store registry (hq/storeregistry.py): one record per store for the pages and the
assigner, loaded from a file, migrated from the pages' old store list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli import hq as hq_cli
from hq.db import Database
from hq.orders.assign import WeekHours
from hq.publishing.push import read_body
from hq.storeregistry import (
    StoreFileError,
    format_hours,
    get_store,
    import_stores,
    list_stores,
    parse_hours,
    sites,
    stores_from_body,
)
from hq.web import stores as web_stores
from tests.stores_hangzhou import HANGZHOU, registry_toml


def test_hours_in_every_form_read_back_the_same() -> None:
    """GIVEN opening hours as one span, seven spans and a table of days
    WHEN parsed and written back THEN each is the week meant, and the stored text reads back
    to the same week; bad spans are refused naming the text."""
    daily = parse_hours("07:00-21:00")
    assert daily == WeekHours.daily(7 * 60, 21 * 60) and format_hours(daily) == "07:00-21:00"
    week = parse_hours({"mon": "closed", "tue": "08:00-20:00", "wed": "08:00-20:00",
                        "thu": "08:00-20:00", "fri": "08:00-22:30", "sat": "00:00-24:00",
                        "sun": "08:00-20:00"})
    assert week.days[0] is None and week.days[4] == (480, 1350) and week.days[5] == (0, 1440)
    assert parse_hours(format_hours(week)) == week
    for bad, words in (("7-21", "HH:MM-HH:MM"), ("21:00-07:00", "open before it closes"),
                       ("07:00-21:00,closed", "seven"), ({"mon": "closed"}, "missing"),
                       ("07:00-24:30", "within a day"), ("07:61-21:00", "HH:MM")):
        with pytest.raises(ValueError, match=words):
            parse_hours(bad)


def test_import_then_list_is_the_one_registry_the_pages_and_the_assigner_read(
        tmp_path: Path, hq_db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN a registry file of twenty Hangzhou stores
    WHEN `edge-hq store import` loads it and `store list --json` prints it
    THEN all twenty are listed with hours and places; the customer pages' store lookup
    and the assigner's sites come from the same rows; a second import replaces a store."""
    path = registry_toml(tmp_path / "stores.toml")
    home = ["--home", str(tmp_path / "hq"), ]
    assert hq_cli.main([*home, "store", "import", str(path), "--db", hq_db_url]) == 0
    assert json.loads(capsys.readouterr().out)["imported"] == 20
    assert hq_cli.main([*home, "store", "list", "--json", "--db", hq_db_url]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [s["id"] for s in listed] == sorted(s for s, _, _ in HANGZHOU)
    xihu = next(s for s in listed if s["id"] == "HZ01-XIHU")
    assert xihu["hours"].startswith("closed,07:00-21:00") and xihu["pickup_per_slot"] == 4
    db = Database(hq_db_url)
    try:
        page = web_stores.get_store(db, "HZ02-WULIN")  # what the customer pages read
        assert page is not None and page.name == "Wulin店" and page.lat == 30.2741
        assigner = {s.store_id: s for s in sites(list_stores(db))}
        assert len(assigner) == 20 and assigner["HZ01-XIHU"].hours.days[0] is None
        assert assigner["HZ02-WULIN"].slot_capacity == 4
        again = registry_toml(tmp_path / "again.toml", places=9, hours="08:00-20:00")
        import_stores(db, stores_from_body(read_body(again))[:1])
        first = get_store(db, HANGZHOU[0][0])
        assert first is not None and first.pickup_per_slot == 9
        assert first.hours is not None and first.hours.days[1] == (480, 1200)
        second = get_store(db, HANGZHOU[1][0])
        assert second is not None and second.pickup_per_slot == 4
    finally:
        db.close()


def test_store_set_keeps_hours_and_places_it_is_not_given(
        tmp_path: Path, hq_db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN a store set with hours and places
    WHEN it is set again with only a new join link
    THEN its hours and places are kept; `store list` shows them."""
    base = ["--home", str(tmp_path / "hq"), "store", "set", "--id", "BJ001", "--name",
            "望京店", "--lat", "39.99", "--lon", "116.47", "--db", hq_db_url]
    assert hq_cli.main([*base, "--hours", "08:00-20:00", "--pickup-per-slot", "6"]) == 0
    assert hq_cli.main([*base, "--join-url", "https://work.weixin.qq.com/ca/x"]) == 0
    capsys.readouterr()
    assert hq_cli.main(["--home", str(tmp_path / "hq"), "store", "list", "--db",
                        hq_db_url]) == 0
    line = capsys.readouterr().out
    assert "08:00-20:00 x6" in line and "state=BJ001" in line
    assert hq_cli.main([*base, "--hours", "8-20"]) == 2
    assert "HH:MM-HH:MM" in capsys.readouterr().err


@pytest.mark.parametrize(("record", "words"), [
    ('id = "S1"\nname = "A"\nlng = 120.1', "unknown field(s) ['lng']"),
    ('id = "S1"\nname = "A"\nlat = 30.1', "give both --lat and --lon"),
    ('id = "S1"\nname = "A"\nlat = "30.1"\nlon = 120.1', "lat and lon must be numbers"),
    ('id = "S1"\nname = "A"\nhours = "9-5"', "HH:MM-HH:MM"),
    ('id = "S1"\nname = "A"\npickup_per_slot = -1', "0 or more"),
    ('id = "S 1"\nname = "A"', "store id"),
    ('name = "A"', "id and name are needed"),
])
def test_a_bad_record_is_named_and_nothing_is_imported(
        tmp_path: Path, hq_db_url: str, record: str, words: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN a registry file whose second store is wrong
    WHEN it is imported THEN exit 2 names the record and the problem, and no store is kept."""
    path = tmp_path / "stores.toml"
    path.write_text(f'[[stores]]\nid = "OK1"\nname = "好"\n\n[[stores]]\n{record}\n',
                    encoding="utf-8")
    assert hq_cli.main(["--home", str(tmp_path / "hq"), "store", "import", str(path),
                        "--db", hq_db_url]) == 2
    err = capsys.readouterr().err
    assert "stores[1]" in err and words in err
    db = Database(hq_db_url)
    try:
        assert list_stores(db) == []
    finally:
        db.close()


def test_a_registry_file_that_is_not_one_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN files with bad syntax, no stores, or one id twice
    WHEN imported THEN each exits 2 with its own message."""
    cases = {"a.json": ("{", "not valid JSON"), "b.toml": ("x = 1", "non-empty 'stores'"),
             "c.json": ('{"stores": [{"id": "A", "name": "a"}, {"id": "A", "name": "b"}]}',
                        "listed twice")}
    for name, (text, words) in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert hq_cli.main(["--home", str(tmp_path / "hq"), "store", "import",
                            str(tmp_path / name)]) == 2
        assert words in capsys.readouterr().err
    with pytest.raises(StoreFileError, match="stores\\[0\\]: a store is a table"):
        stores_from_body({"stores": ["HZ01"]})


def test_the_pages_old_store_list_moves_into_the_registry_once(hq_db_url: str) -> None:
    """GIVEN a database from before the registry: stores in web_store only
    WHEN this version opens it THEN they are in the registry (no hours: they take no
    assigned pickups until given some), once: a store removed later stays removed."""
    db = Database(hq_db_url)
    with db.tx() as cur:  # as an older version left it
        cur.execute("DELETE FROM hq_meta WHERE key='store_registry'")
        cur.execute("INSERT INTO web_store(store, name, address, lat, lon, join_url,"
                    " updated_at) VALUES ('BJ001', '望京店', '望京街1号', 39.99, 116.47,"
                    " 'https://work.weixin.qq.com/ca/x', 1)")
    db.close()
    db = Database(hq_db_url)
    try:
        moved = get_store(db, "BJ001")
        assert moved is not None and (moved.name, moved.lat, moved.hours) == ("望京店", 39.99,
                                                                             None)
        assert moved.join_link().endswith("state=BJ001") and sites([moved]) == []
        web_stores.remove_store(db, "BJ001")
    finally:
        db.close()
    db = Database(hq_db_url)
    try:
        assert get_store(db, "BJ001") is None
    finally:
        db.close()
