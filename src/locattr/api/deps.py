"""Request dependencies: the database handle (each endpoint's reads go through `Database.run`),
and the parameters several endpoints share (page size, cursors, component keys).

Cursors and component keys declare their pattern in the OpenAPI schema (so a client, or
schemathesis, knows which values are well formed) without FastAPI enforcing it: the storage
layer's parsers check them and answer with their own codes (`invalid_cursor`,
`malformed_component_key`), and the tests hold the patterns to what the parsers accept.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request

from locattr.api.database import Database
from locattr.api.model import NO_MODEL, ModelHost, ModelUnavailableError
from locattr.storage import queries
from locattr.storage.keys import KEY_PATTERN, MAX_KEY_CHARS


async def get_database(request: Request) -> Database:
    # async: FastAPI would run a plain function in a worker thread, one more hop per request
    return request.app.state.database


DatabaseDep = Annotated[Database, Depends(get_database)]


async def get_model(request: Request) -> ModelHost:
    """The model the server holds (`locattr serve --model`); 409 when it holds none."""
    host: ModelHost | None = request.app.state.model
    if host is None:
        raise ModelUnavailableError(NO_MODEL)
    return host


ModelDep = Annotated[ModelHost, Depends(get_model)]


LimitParam = Annotated[int, Query(ge=1, le=queries.MAX_PAGE_SIZE, description="Page size.")]
"""The size of a page of a keyset-paginated list (its default is each endpoint's own)."""


def _cursor(pattern: str) -> Any:
    return Query(
        max_length=200,
        description="`next_cursor` of the previous page.",
        json_schema_extra={"pattern": pattern},
    )


IdCursorParam = Annotated[str | None, _cursor(queries.ID_CURSOR_PATTERN)]
SearchCursorParam = Annotated[str | None, _cursor(queries.SEARCH_CURSOR_PATTERN)]
ComponentCursorParam = Annotated[str | None, _cursor(queries.COMPONENT_CURSOR_PATTERN)]
EdgeCursorParam = Annotated[str | None, _cursor(queries.EDGE_CURSOR_PATTERN)]
KeyParam = Annotated[
    str,
    Path(
        max_length=MAX_KEY_CHARS,
        description="Component key `layer:index`.",
        json_schema_extra={"pattern": KEY_PATTERN},
    ),
]
