"""The API's database handle: one read-only async engine, opened and closed by the lifespan."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry

from locattr.errors import LocattrError
from locattr.storage import LocalAttrDB, create_async_engine_for
from locattr.storage.engine import DatabaseTarget
from locattr.storage.reads import LayerCache

T = TypeVar("T")
_PROGRESS_EVERY = 10_000  # SQLite VM steps between deadline checks (about a millisecond)
_DEADLINE = "locattr_deadline"


class QueryTimeoutError(LocattrError):
    """A request's SQL ran past the server's time limit."""


@dataclass
class Database:
    """What every request needs: the engine, the layer table cache, the query time limit."""

    target: DatabaseTarget
    engine: AsyncEngine
    timeout_s: float
    layers: LayerCache = field(default_factory=LayerCache)

    @classmethod
    def open(cls, path_or_url: str, timeout_s: float) -> Database:
        """Check the database (exists, is locattr's, right revision) and open it read-only."""
        if not path_or_url:
            raise LocattrError("no database to serve: set LOCATTR_DB or pass --db PATH_OR_URL")
        with LocalAttrDB(path_or_url, readonly=True) as checked:  # same checks as every reader
            target = checked.target
        engine = create_async_engine_for(target, readonly=True, timeout_s=timeout_s)
        database = cls(target=target, engine=engine, timeout_s=timeout_s)
        if target.is_sqlite:
            event.listen(engine.sync_engine, "connect", _install_deadline)
        return database

    async def run(self, connection: AsyncConnection, read: Callable[[Connection], T]) -> T:
        """Run a `locattr.storage.reads` function within the time limit."""
        raw = await connection.get_raw_connection()
        deadline: list[float] = raw.info.get(_DEADLINE, [math.inf])  # SQLite connections only
        deadline[0] = time.monotonic() + self.timeout_s
        try:
            return await connection.run_sync(read)
        except Exception as error:  # the driver's own error type when raised from its cursor
            if _is_timeout(error):
                raise QueryTimeoutError(
                    f"the query took longer than {self.timeout_s:g} s; ask for fewer components "
                    "or a smaller page"
                ) from error
            raise
        finally:
            deadline[0] = math.inf


def _is_timeout(error: Exception) -> bool:
    """SQLite's progress-handler interrupt, or PostgreSQL's statement_timeout."""
    return "interrupted" in str(error) or "statement timeout" in str(error)


def _install_deadline(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    """Give each SQLite connection a deadline that aborts a statement running past it."""
    deadline = [math.inf]
    record.info[_DEADLINE] = deadline

    def past_deadline() -> int:
        return int(time.monotonic() > deadline[0])  # non-zero interrupts the statement

    dbapi_connection.run_async(lambda raw: raw.set_progress_handler(past_deadline, _PROGRESS_EVERY))
