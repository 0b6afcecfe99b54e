"""Alembic environment: runs migrations on the connection locattr hands over, or on LOCATTR_DB."""

import os

from alembic import context
from sqlalchemy import Connection

from locattr.storage.engine import create_sync_engine, resolve_target
from locattr.storage.models import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get("LOCATTR_DB", "")
    engine = create_sync_engine(resolve_target(url))
    try:
        with engine.connect() as new_connection:
            _run(new_connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("locattr migrations run online only: pass a database (LOCATTR_DB)")
run_migrations_online()
