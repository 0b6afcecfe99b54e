"""The one engine factory: a path or SQLAlchemy URL -> a configured sync or async engine.

SQLite connections get WAL, ``synchronous=NORMAL``, ``foreign_keys=ON`` and a busy timeout on
every connection (those pragmas are per connection). Writers begin transactions with
``BEGIN IMMEDIATE`` so that two writers queue on the busy timeout instead of failing with
"database is locked"; read-only engines open the file with ``mode=ro``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from locattr.errors import LocattrError

WRITER_BUSY_TIMEOUT_MS = 120_000
READER_BUSY_TIMEOUT_MS = 10_000
SQLITE_CACHE_KIB = 64 * 1024


class DatabaseError(LocattrError):
    """A database that cannot be opened or used (missing, corrupt, wrong URL, wrong schema)."""


@dataclass(frozen=True)
class DatabaseTarget:
    """Where a database lives: a SQLite file, or a server URL."""

    url: URL
    sqlite_path: Path | None

    @property
    def is_sqlite(self) -> bool:
        return self.sqlite_path is not None

    @property
    def display(self) -> str:
        """A name for messages (the file path, or the URL without its password)."""
        if self.sqlite_path is not None:
            return str(self.sqlite_path)
        return self.url.render_as_string(hide_password=True)


def resolve_target(path_or_url: str | Path) -> DatabaseTarget:
    """Interpret a CLI/API database argument: a filesystem path or a SQLAlchemy URL."""
    text = str(path_or_url).strip()
    if not text:
        raise DatabaseError("no database given: pass --db PATH_OR_URL or set LOCATTR_DB")
    if "://" not in text:
        path = Path(text).expanduser().resolve()
        return DatabaseTarget(URL.create("sqlite+pysqlite", database=str(path)), path)
    try:
        url = make_url(text)
    except ArgumentError as error:
        raise DatabaseError(f"cannot parse database URL {text!r}: {error}") from error
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise DatabaseError("in-memory SQLite is not supported: give a file path")
        path = Path(url.database).expanduser().resolve()
        return DatabaseTarget(URL.create("sqlite+pysqlite", database=str(path)), path)
    if backend == "postgresql":
        return DatabaseTarget(url.set(drivername="postgresql+psycopg"), None)
    raise DatabaseError(
        f"unsupported database {backend!r} in {text!r}: use a SQLite file path or a "
        "postgresql:// URL"
    )


def create_sync_engine(
    target: DatabaseTarget, *, readonly: bool = False, pool_size: int | None = None
) -> Engine:
    """A sync engine for `target`. Read-only engines never write (SQLite ``mode=ro``).

    With `pool_size`, exactly that many connections are kept open and shared (a server's), the
    most recently used first: its page cache is the warmest.
    """
    pool: dict[str, Any] = {}
    if pool_size is not None:
        pool = {"pool_size": pool_size, "max_overflow": 0, "pool_use_lifo": True}
    if target.sqlite_path is None:
        options: dict[str, Any] = {"pool_pre_ping": True}
        if readonly:
            # One snapshot per transaction, so a request's two statements agree.
            options["execution_options"] = {"postgresql_readonly": True}
            options["isolation_level"] = "REPEATABLE READ"
        return create_engine(target.url, **options, **pool)
    url = _sqlite_url(target.sqlite_path, "sqlite+pysqlite", readonly)
    engine = create_engine(url, **pool)
    _configure_sqlite(engine, target.sqlite_path, readonly=readonly)
    return engine


def create_async_engine_for(
    target: DatabaseTarget, *, readonly: bool = True, timeout_s: float | None = None
) -> AsyncEngine:
    """An async engine (aiosqlite / asyncpg) for `target`, read-only by default (the API's).

    On PostgreSQL `timeout_s` becomes the server's statement timeout; SQLite callers enforce
    their own (see `locattr.api.database`).
    """
    if target.sqlite_path is None:
        url = target.url.set(drivername="postgresql+asyncpg")
        options: dict[str, Any] = {"pool_pre_ping": True}
        if timeout_s is not None:
            timeout_ms = str(int(timeout_s * 1000))
            options["connect_args"] = {"server_settings": {"statement_timeout": timeout_ms}}
        if readonly:
            # One snapshot per transaction, so a request's two statements agree.
            options["execution_options"] = {"postgresql_readonly": True}
            options["isolation_level"] = "REPEATABLE READ"
        return create_async_engine(url, **options)
    engine = create_async_engine(_sqlite_url(target.sqlite_path, "sqlite+aiosqlite", readonly))
    _configure_sqlite(engine.sync_engine, target.sqlite_path, readonly=readonly)
    return engine


def _sqlite_url(path: Path, driver: str, readonly: bool) -> URL:
    if not readonly:
        return URL.create(driver, database=str(path))
    return URL.create(driver, database=f"file:{path}", query={"mode": "ro", "uri": "true"})


def _configure_sqlite(engine: Engine, path: Path, *, readonly: bool) -> None:
    busy_ms = READER_BUSY_TIMEOUT_MS if readonly else WRITER_BUSY_TIMEOUT_MS
    begin = "BEGIN" if readonly else "BEGIN IMMEDIATE"

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to the "begin" hook below (pysqlite would BEGIN lazily).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            if not readonly:
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            # Searches scan index ranges repeatedly: a larger page cache than the 2 MB default.
            cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
            cursor.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as error:
            raise DatabaseError(
                f"{path} is not a usable locattr database (SQLite says: {error})"
            ) from error
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql(begin)
