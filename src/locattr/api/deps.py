"""Request dependencies: the database handle and one connection per request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection

from locattr.api.database import Database


def get_database(request: Request) -> Database:
    return request.app.state.database


DatabaseDep = Annotated[Database, Depends(get_database)]


async def get_connection(database: DatabaseDep) -> AsyncIterator[AsyncConnection]:
    async with database.engine.connect() as connection:
        yield connection


ConnectionDep = Annotated[AsyncConnection, Depends(get_connection)]
