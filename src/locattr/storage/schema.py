"""Schema revisions: create a new database, check an existing one, upgrade with alembic."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from locattr.storage.engine import DatabaseError, DatabaseTarget, create_sync_engine
from locattr.storage.models import SCHEMA_REVISION

if TYPE_CHECKING:
    from alembic.config import Config

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def migrations_dir() -> Path:
    """The alembic scripts: packaged in wheels as ``locattr/_alembic``, top-level in a checkout."""
    for candidate in (_PACKAGE_ROOT / "_alembic", _PACKAGE_ROOT.parent.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise DatabaseError("locattr's migration scripts are missing from this installation")


def alembic_config(target: DatabaseTarget, connection: Connection | None = None) -> Config:
    from alembic.config import Config  # alembic is needed only to create or upgrade

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", target.url.render_as_string(hide_password=False))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(target: DatabaseTarget) -> str:
    """Bring `target` to the current schema (creating it if empty); returns the new revision."""
    engine = create_sync_engine(target)
    try:
        _upgrade_to_head(engine, target)
        return current_revision(engine, target) or SCHEMA_REVISION
    finally:
        engine.dispose()


def current_revision(engine: Engine, target: DatabaseTarget) -> str | None:
    """The database's alembic revision; None for an empty database.

    Raises `DatabaseError` naming the file when it is not a (locattr) database.
    """
    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
            if "alembic_version" in tables:
                return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError as error:
        raise DatabaseError(
            f"cannot read {target.display} as a locattr database: {error.orig}"
        ) from error
    if tables:
        raise DatabaseError(
            f"{target.display} is not a locattr database (it has tables {sorted(tables)} but no "
            "schema revision)"
        )
    return None


def check_revision(engine: Engine, target: DatabaseTarget, *, create: bool) -> None:
    """Make sure `target` is at this locattr's schema revision, creating it when asked."""
    revision = current_revision(engine, target)
    if revision == SCHEMA_REVISION:
        return
    if revision is None:
        if not create:
            raise DatabaseError(f"{target.display} is empty: build it with locattr-generate")
        _upgrade_to_head(engine, target)
        return
    raise DatabaseError(
        f"{target.display} is at schema revision {revision!r} but this locattr uses "
        f"{SCHEMA_REVISION!r}: run `locattr db upgrade --db {target.display}` (if the database "
        "is newer than this locattr, upgrade locattr instead)"
    )


def _upgrade_to_head(engine: Engine, target: DatabaseTarget) -> None:
    from alembic import command

    with engine.begin() as connection:
        command.upgrade(alembic_config(target, connection), "head")
