"""The API's database handle: opened read-only by the lifespan; each request's reads in one call.

SQLite is a library, not a server: a request's reads run on a plain sqlite3 connection in a
worker thread, one thread hop per request (aiosqlite hops threads for every cursor call, about
four per statement, which cost more than the statements themselves). PostgreSQL reads run on
asyncpg connections, where each statement is a network round trip anyway.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import Connection, Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry

from locattr.errors import LocattrError
from locattr.storage import LocalAttrDB, create_async_engine_for
from locattr.storage.engine import DatabaseTarget, create_sync_engine
from locattr.storage.reads import LayerCache

T = TypeVar("T")
SQLITE_READERS = 8
"""Concurrent SQLite reads: pooled connections kept open, and worker threads to run them."""
_PROGRESS_EVERY = 10_000  # SQLite VM steps between deadline checks (about a millisecond)
_DEADLINE = "locattr_deadline"


class QueryTimeoutError(LocattrError):
    """A request's SQL ran past the server's time limit."""


@dataclass
class Database:
    """What every request needs: the engine, the layer table cache, the query time limit.

    `engine` is a sync engine for SQLite (read in worker threads), an async one for PostgreSQL.
    """

    target: DatabaseTarget
    engine: Engine | AsyncEngine
    timeout_s: float
    layers: LayerCache = field(default_factory=LayerCache)
    readers: anyio.CapacityLimiter = field(
        default_factory=lambda: anyio.CapacityLimiter(SQLITE_READERS)
    )

    def vocabulary(self, connection: Connection) -> list[str] | None:
        """The stored vocabulary, read once (see `LayerCache`)."""
        return self.layers.vocabulary(connection)

    @classmethod
    def open(cls, path_or_url: str, timeout_s: float) -> Database:
        """Check the database (exists, is locattr's, right revision) and open it read-only."""
        if not path_or_url:
            raise LocattrError("no database to serve: set LOCATTR_DB or pass --db PATH_OR_URL")
        with LocalAttrDB(path_or_url, readonly=True) as checked:  # same checks as every reader
            target = checked.target
        if not target.is_sqlite:
            engine = create_async_engine_for(target, readonly=True, timeout_s=timeout_s)
            return cls(target=target, engine=engine, timeout_s=timeout_s)
        sqlite = create_sync_engine(target, readonly=True, pool_size=SQLITE_READERS)
        event.listen(sqlite, "connect", _install_deadline)
        return cls(target=target, engine=sqlite, timeout_s=timeout_s)

    async def run(self, read: Callable[[Connection], T]) -> T:
        """Run `read` (statements from `locattr.storage.reads`, and any work on their results)
        on one connection in one transaction, within the time limit."""
        try:
            if isinstance(self.engine, AsyncEngine):
                async with self.engine.connect() as connection:
                    return await connection.run_sync(read)
            return await anyio.to_thread.run_sync(self._run_sqlite, read, limiter=self.readers)
        except Exception as error:  # the driver's own error type when raised from its cursor
            # Our own errors quote the request (a key named "interrupted"): never a timeout.
            if not isinstance(error, LocattrError) and _is_timeout(error):
                raise QueryTimeoutError(
                    f"the query took longer than {self.timeout_s:g} s; ask for fewer components "
                    "or a smaller page"
                ) from error
            raise

    def _run_sqlite(self, read: Callable[[Connection], T]) -> T:
        assert isinstance(self.engine, Engine)
        with self.engine.connect() as connection:
            deadline: list[float] = connection.info[_DEADLINE]
            deadline[0] = time.monotonic() + self.timeout_s
            try:
                return read(connection)
            finally:
                deadline[0] = math.inf

    async def close(self) -> None:
        if isinstance(self.engine, AsyncEngine):
            await self.engine.dispose()
        else:
            self.engine.dispose()


def _is_timeout(error: Exception) -> bool:
    """SQLite's progress-handler interrupt, or PostgreSQL's statement_timeout."""
    return "interrupted" in str(error) or "statement timeout" in str(error)


def _install_deadline(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    """Give each SQLite connection a deadline that aborts a statement running past it."""
    deadline = [math.inf]
    record.info[_DEADLINE] = deadline

    def past_deadline() -> int:
        return int(time.monotonic() > deadline[0])  # non-zero interrupts the statement

    dbapi_connection.set_progress_handler(past_deadline, _PROGRESS_EVERY)
