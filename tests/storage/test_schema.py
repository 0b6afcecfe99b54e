"""Migrations and opening databases that are not (yet, or no longer) what we expect."""

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text

from locattr import LocalAttrDB
from locattr.storage import DatabaseError, resolve_target
from locattr.storage.engine import create_sync_engine
from locattr.storage.models import SCHEMA_REVISION
from locattr.storage.schema import alembic_config, upgrade


def test_models_name_the_alembic_head() -> None:
    config = alembic_config(resolve_target("/tmp/unused.db"))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION


def test_upgrade_head_then_check_finds_no_difference(db_url: str) -> None:
    target = resolve_target(db_url)
    assert upgrade(target) == SCHEMA_REVISION
    engine = create_sync_engine(target)
    try:
        with engine.begin() as connection:
            command.check(alembic_config(target, connection))  # raises on any model/db drift
    finally:
        engine.dispose()
    with LocalAttrDB(db_url, readonly=True) as db:
        assert db.get_prompt_count() == 0


def test_other_revision_names_the_command_that_fixes_it(db_url: str) -> None:
    LocalAttrDB(db_url).close()
    engine = create_sync_engine(resolve_target(db_url))
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0000_older'"))
    engine.dispose()
    for readonly in (False, True):
        with pytest.raises(DatabaseError, match="locattr db upgrade --db"):
            LocalAttrDB(db_url, readonly=readonly)


def test_an_older_database_upgrades_in_place(db_url: str) -> None:
    target = resolve_target(db_url)
    engine = create_sync_engine(target)
    with engine.begin() as connection:
        command.upgrade(alembic_config(target, connection), "0001_initial")
    engine.dispose()
    with pytest.raises(DatabaseError, match="0001_initial.*locattr db upgrade"):
        LocalAttrDB(db_url)
    assert upgrade(target) == SCHEMA_REVISION
    with LocalAttrDB(db_url) as db:
        db.register_layers({"h.0.mlp.c_fc": 2})
        assert db.build_postings() == 0


def test_missing_file_read_only(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match=r"no database at .*missing\.db.*locattr-generate"):
        LocalAttrDB(tmp_path / "missing.db", readonly=True)
    with pytest.raises(DatabaseError, match="does not exist"):
        LocalAttrDB(tmp_path / "no-such-dir" / "x.db")


@pytest.mark.parametrize("readonly", [False, True])
def test_garbage_file_is_named_in_the_error(tmp_path: Path, readonly: bool) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"this is not sqlite" * 500)
    with pytest.raises(DatabaseError, match=r"notes\.db"):
        LocalAttrDB(path, readonly=readonly)
    assert path.read_bytes() == b"this is not sqlite" * 500


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE cats (name TEXT)")
    with pytest.raises(DatabaseError, match=r"other\.db is not a locattr database"):
        LocalAttrDB(path)


def test_truncated_database_is_named_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.db"
    LocalAttrDB(path).close()
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DatabaseError, match=r"cut\.db"):
        LocalAttrDB(path, readonly=True).get_prompt_count()


def test_sqlite_pragmas_are_set_on_every_connection(tmp_path: Path) -> None:
    with LocalAttrDB(tmp_path / "p.db") as db, db.engine.connect() as connection:
        pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("foreign_keys") == 1
        assert pragma("synchronous") == 1  # NORMAL
        assert int(pragma("busy_timeout") or 0) >= 60_000


def test_unsupported_urls_say_what_is_accepted() -> None:
    with pytest.raises(DatabaseError, match="postgresql://"):
        resolve_target("mysql://u@h/db")
    with pytest.raises(DatabaseError, match="LOCATTR_DB"):
        resolve_target("  ")


def test_plain_alembic_uses_locattr_db(tmp_path: Path) -> None:
    """`alembic upgrade head` from the repo root works on LOCATTR_DB, as alembic.ini says."""
    path = tmp_path / "plain.db"
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=root,
        env={"LOCATTR_DB": str(path), "PATH": ""},
        check=True,
        capture_output=True,
    )
    with LocalAttrDB(path, readonly=True) as db:
        assert db.get_prompt_count() == 0
