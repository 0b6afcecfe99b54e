"""Request dependencies: the database handle (each endpoint's reads go through `Database.run`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from locattr.api.database import Database


async def get_database(request: Request) -> Database:
    # async: FastAPI would run a plain function in a worker thread, one more hop per request
    return request.app.state.database


DatabaseDep = Annotated[Database, Depends(get_database)]
