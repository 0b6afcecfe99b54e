"""The FastAPI application: lifespan-managed database, routers, errors, docs, gzip, frontend."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from locattr import __version__
from locattr.api.database import Database
from locattr.api.docs import install_docs
from locattr.api.errors import install_error_handlers
from locattr.api.routers import components, meta, prompts, search
from locattr.api.settings import Settings
from locattr.memory import keep_freed_memory

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


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; the database (LOCATTR_DB or `settings.db`) is opened when it starts."""
    configured = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database.open(configured.db, configured.query_timeout_s)
        app.state.database = database
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
    install_docs(app)
    for router in (meta.router, prompts.router, search.router, components.router):
        app.include_router(router)
    # Level 1: a pruned graph's JSON shrinks 4x in ~1 ms; level 9 (the default) gains 15% more
    # and costs ~15 ms.
    app.add_middleware(GZipMiddleware, minimum_size=1000, compresslevel=1)
    if configured.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=configured.cors_origins, allow_methods=["GET"]
        )
    _mount_frontend(app, configured)
    return app


def _mount_frontend(app: FastAPI, settings: Settings) -> None:
    frontend = settings.frontend_dir
    if (frontend / "index.html").is_file():
        app.mount("/", StaticFiles(directory=frontend, html=True), name="frontend")
        return

    @app.get("/", include_in_schema=False)
    async def no_frontend() -> HTMLResponse:
        return HTMLResponse(NO_FRONTEND_PAGE)
