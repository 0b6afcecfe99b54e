"""/docs (Swagger UI) and /redoc from assets installed with the server, not from a CDN.

FastAPI's own pages load their JavaScript, CSS, favicon and fonts from other hosts, so on a
compute node without network they stay blank. The `fastapi-offline` package ships Swagger UI's
and ReDoc's bundles; the app serves them under `ASSETS_URL` with FastAPI's documented page
builders.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
# ReDoc's side menu shows Redocly's logo from their CDN, whatever its options say: offline that is
# a failed request and a console error, online a call to a third party. A blank image instead.
REDOC_LOGO = b'"https://cdn.redoc.ly/redoc/logo-mini.svg"'
BLANK_IMAGE = b'"data:image/svg+xml,%3Csvg xmlns=%27http://www.w3.org/2000/svg%27/%3E"'


def assets_dir() -> Path:
    """The installed `fastapi-offline` package's folder of Swagger UI and ReDoc assets."""
    folder = Path(str(files("fastapi_offline") / "static"))
    missing = [name for name in ASSETS if not (folder / name).is_file()]
    assert not missing, f"fastapi-offline at {folder} lacks {missing}: reinstall locattr"
    return folder


@cache
def redoc_bundle() -> bytes:
    """ReDoc's standalone bundle, its one hard-coded remote image replaced by a blank one."""
    return (assets_dir() / "redoc.standalone.js").read_bytes().replace(REDOC_LOGO, BLANK_IMAGE)


def install_docs(app: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve Swagger UI at `docs_url` and ReDoc at `redoc_url` from local assets.

    The app must be made with ``docs_url=None, redoc_url=None`` (FastAPI's CDN pages off), and
    this called before anything is mounted at ``/``, which would otherwise shadow these routes.
    """
    assert app.docs_url is None and app.redoc_url is None, "make the app with docs_url=None"
    openapi_url = app.openapi_url
    assert openapi_url is not None, "the docs pages need the OpenAPI document"
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url

    @app.get(f"{ASSETS_URL}/redoc.standalone.js", include_in_schema=False)
    async def redoc_js() -> Response:
        return Response(redoc_bundle(), media_type="text/javascript")

    # After the route above, which takes precedence over the file of the same name.
    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="docs-assets")

    def root(request: Request) -> str:
        # Behind a proxy that strips a prefix, every URL in the page must carry it.
        return str(request.scope.get("root_path", "")).rstrip("/")

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        prefix = root(request)
        return get_swagger_ui_html(
            openapi_url=prefix + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{prefix}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{prefix}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{prefix}{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=prefix + oauth2_redirect_url if oauth2_redirect_url else None,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    if oauth2_redirect_url:

        @app.get(oauth2_redirect_url, include_in_schema=False)
        async def swagger_ui_oauth2_redirect() -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        prefix = root(request)
        return get_redoc_html(
            openapi_url=prefix + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{prefix}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{prefix}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
