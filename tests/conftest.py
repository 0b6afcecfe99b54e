"""Shared fixtures: a fresh database per test on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from locattr import LocalAttrDB

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def postgres_admin_url() -> str:
    url = os.environ.get("LOCATTR_TEST_POSTGRES_URL")
    if not url:
        pytest.fail(
            "LOCATTR_TEST_POSTGRES_URL is not set: run `make test` (it starts PostgreSQL), or "
            "deselect these tests with -m 'not postgres'"
        )
    return url


def create_postgres_database() -> str:
    """A new empty database on the test server; returns its URL."""
    admin = make_url(postgres_admin_url()).set(drivername="postgresql+psycopg")
    name = f"locattr_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin.set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(url: str) -> None:
    admin = make_url(postgres_admin_url()).set(drivername="postgresql+psycopg")
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A path or URL where no locattr database exists yet, on each backend."""
    if request.param == "sqlite":
        yield str(tmp_path / "locattr.db")
        return
    url = create_postgres_database()
    yield url
    drop_postgres_database(url)


@pytest.fixture
def db(db_url: str) -> Iterator[LocalAttrDB]:
    database = LocalAttrDB(db_url)
    yield database
    database.close()
