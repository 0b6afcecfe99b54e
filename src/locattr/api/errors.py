"""One error shape for every failure: `ErrorBody` with a code and a sentence."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from locattr.api.database import QueryTimeoutError
from locattr.api.schemas import ErrorBody
from locattr.errors import LocattrError
from locattr.storage import ComponentKeyError, CursorError, DatabaseError, GraphCodecError
from locattr.storage.corpus import StaleCorpusTablesError, UnknownComponentError
from locattr.storage.queries import QueryError


class NotFoundError(LocattrError):
    """A prompt, component or resource this database does not have."""


_STATUS: list[tuple[type[LocattrError], int, str]] = [
    (NotFoundError, 404, "not_found"),
    (UnknownComponentError, 404, "not_found"),
    (StaleCorpusTablesError, 409, "corpus_tables_stale"),
    (ComponentKeyError, 422, "malformed_component_key"),
    (CursorError, 422, "invalid_cursor"),
    (QueryError, 422, "invalid_query"),
    (QueryTimeoutError, 503, "query_timeout"),
    (GraphCodecError, 503, "corrupt_graph"),
    (DatabaseError, 503, "database_unavailable"),
]

ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorBody, "description": "No such prompt, component or path."},
    409: {
        "model": ErrorBody,
        "description": "The database cannot answer this yet: its corpus attributions and edge "
        "index miss prompts until `locattr db aggregate` rebuilds them.",
    },
    422: {"model": ErrorBody, "description": "A parameter is malformed or out of range."},
    503: {
        "model": ErrorBody,
        "description": "The query timed out, or the database or a stored graph is unusable.",
    },
}


def error_response(
    status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = ErrorBody(error=code, detail=detail).model_dump()
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LocattrError)
    async def _locattr_error(_request: Request, error: Exception) -> JSONResponse:
        for kind, status, code in _STATUS:
            if isinstance(error, kind):
                return error_response(status, code, str(error))
        return error_response(422, "invalid_request", str(error))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        problems = []
        for item in error.errors():
            where = " ".join(str(part) for part in item.get("loc", ()))
            problems.append(f"{where}: {item.get('msg', 'invalid')}")
        return error_response(422, "invalid_parameter", "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        if error.status_code == 404:
            detail = f"no such path {request.url.path!r}: the API is under /api, see /docs"
            return error_response(404, "not_found", detail)
        # Keep the exception's headers: a 405 must say which methods are allowed.
        return error_response(
            error.status_code, "http_error", str(error.detail), headers=error.headers
        )
