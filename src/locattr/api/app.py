"""The FastAPI application: lifespan-managed database, routers, errors, docs, gzip, frontend."""

from __future__ import annotations

import gc
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from locattr import __version__
from locattr.api.database import Database
from locattr.api.docs import install_docs
from locattr.api.errors import install_error_handlers
from locattr.api.model import (
    ModelHost,
    install_model_error_handlers,
    limit_body,
    load_host,
)
from locattr.api.routers import components, graphs, interventions, meta, prompts, search
from locattr.api.settings import MAX_BODY_BYTES, Settings
from locattr.memory import keep_freed_memory
from locattr.storage import reads

API_PREFIX = "/api"
"""Where every endpoint lives; everything else is the frontend."""

NO_FRONTEND_PAGE = """<!doctype html><html><head><title>locattr</title></head><body>
<h1>locattr API</h1><p>The API is running: see <a href="/docs">/docs</a>.</p>
<p>The browser frontend is not built yet (there is no <code>frontend/dist</code> here):
run <code>make install</code> in the repository (it builds <code>frontend/</code> with npm), or
point <code>LOCATTR_FRONTEND_DIR</code> at a built copy, then restart the server.</p>
</body></html>"""


def _operation_id(route: APIRoute) -> str:
    """camelCase operation ids from function names, so generated clients read well."""
    first, *rest = route.name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def create_app(settings: Settings | None = None, *, model: ModelHost | None = None) -> FastAPI:
    """The app; the database (LOCATTR_DB or `settings.db`) is opened when it starts, and the
    model (LOCATTR_MODEL or `settings.model`) loaded then, unless `model` is already loaded."""
    configured = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database.open(configured.db, configured.query_timeout_s)
        app.state.database = database
        host = model
        if host is None and configured.model:
            host = await anyio.to_thread.run_sync(load_host, configured)
        if host is not None:
            host.meta = await database.run(reads.get_meta)
            host.runtime.check_database(host.meta, database.target.display)
        app.state.model = host
        keep_freed_memory()
        # Everything built so far lives as long as the server: keep it out of full garbage
        # collections, which otherwise stall a request for tens of milliseconds now and then.
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            await database.close()

    app = FastAPI(
        title="locattr",
        version=__version__,
        summary="Local attribution graphs of SPD-decomposed language models.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        docs_url=None,  # served from local assets by `install_docs`: nodes may have no network
        redoc_url=None,
    )
    install_error_handlers(app)
    install_model_error_handlers(app)
    install_docs(app)
    api = APIRouter(prefix=API_PREFIX)
    for router in (meta.router, prompts.router, search.router, components.router):
        api.include_router(router)
    for router in (graphs.model_router, graphs.router, interventions.router):
        api.include_router(router)
    app.include_router(api)
    # Level 1: a pruned graph's JSON shrinks 4x in ~1 ms; level 9 (the default) gains 15% more
    # and costs ~15 ms.
    app.add_middleware(GZipMiddleware, minimum_size=1000, compresslevel=1)
    if configured.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=configured.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type"],
        )
    app.add_middleware(limit_body, max_bytes=MAX_BODY_BYTES)
    _mount_frontend(app, configured)
    return app


def _mount_frontend(app: FastAPI, settings: Settings) -> None:
    frontend = settings.frontend_dir
    if (frontend / "index.html").is_file():
        static = StaticFiles(directory=frontend, html=True)
        app.mount("/", _api_paths_not_static(app, static), name="frontend")
        return

    @app.get("/", include_in_schema=False)
    async def no_frontend() -> HTMLResponse:
        return HTMLResponse(NO_FRONTEND_PAGE)


def _api_paths_not_static(app: FastAPI, static: ASGIApp) -> ASGIApp:
    """The frontend, except under /api/: a request no API route takes (a method the path does
    not serve) reaches this catch-all mount, whose 405 would name the static files' methods
    (GET, HEAD) rather than the ones the OpenAPI document gives the path (POST)."""
    documented: list[tuple[re.Pattern[str], str]] = []

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(f"{API_PREFIX}/"):
            await static(scope, receive, send)
            return
        if not documented:
            for template, operations in app.openapi()["paths"].items():
                methods = ", ".join(sorted(method.upper() for method in operations))
                documented.append((compile_path(template)[0], methods))
        allowed = next((methods for regex, methods in documented if regex.match(path)), None)
        if allowed is None:
            raise StarletteHTTPException(404)
        raise StarletteHTTPException(405, headers={"Allow": allowed})

    return serve
