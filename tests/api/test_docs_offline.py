"""/docs and /redoc render in Chromium with every other host unreachable (an offline node)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from locattr import LocalAttrDB
from locattr.api.settings import Settings
from tests.api.conftest import fill
from tests.api.server import running_server
from tests.frontend.conftest import Console, launch


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # module scope: Playwright's sync API keeps an asyncio loop marked as running in this
    # thread while it is open, which later tests' asyncio.run() would trip over
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@contextmanager
def offline_page(browser: Browser, api_url: str, path: str) -> Iterator[Page]:
    """The page at `path` with every request to another host refused and recorded; on leaving,
    asserts that there was none and that the page logged no error."""
    own = urlsplit(api_url)
    elsewhere: list[str] = []
    console = Console()

    def only_own_host(route: Route) -> None:
        url = urlsplit(route.request.url)
        if (url.scheme, url.netloc) == (own.scheme, own.netloc):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort("internetdisconnected")

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.route("**/*", only_own_host)
    page = context.new_page()
    page.on("console", console.on_console)
    page.on("pageerror", lambda error: console.errors.append(f"uncaught: {error}"))
    page.set_default_timeout(15_000)
    try:
        page.goto(f"{api_url}{path}")
        yield page
        page.wait_for_load_state("networkidle")
    finally:
        context.close()
    assert elsewhere == [], f"{path} asked other hosts: {elsewhere}"
    assert console.errors == [], "\n".join(console.errors)


def test_swagger_ui_renders_offline(browser: Browser, api_url: str) -> None:
    with offline_page(browser, api_url, "/docs") as page:
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("locattr")
        operations = page.locator(".swagger-ui .opblock-summary-path")
        expect(operations.filter(has_text="/api/prompts").first).to_be_visible()
        expect(operations.filter(has_text="/api/search").first).to_be_visible()


def test_redoc_renders_offline(browser: Browser, api_url: str) -> None:
    with offline_page(browser, api_url, "/redoc") as page:
        expect(page.get_by_role("heading", level=1)).to_contain_text("locattr")
        expect(page.get_by_role("heading", name="Search Prompts", level=2)).to_be_visible()
        expect(page.get_by_role("menuitem", name="components", exact=True)).to_be_visible()


def test_docs_pages_name_only_local_assets(api_url: str) -> None:
    for path in ("/docs", "/redoc"):
        page = httpx.get(f"{api_url}{path}", timeout=30).text
        assert "/docs-assets/" in page and "https://" not in page, page
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"):
        response = httpx.get(f"{api_url}/docs-assets/{asset}", timeout=30)
        assert response.status_code == 200 and len(response.content) > 1000, asset
        assert b"cdn.redoc.ly" not in response.content, asset
    redirect = httpx.get(f"{api_url}/docs/oauth2-redirect", timeout=30)
    assert redirect.status_code == 200 and "oauth2" in redirect.text.lower()


def test_the_frontend_at_the_root_does_not_shadow_the_docs(tmp_path: Path) -> None:
    frontend = tmp_path / "dist"
    frontend.mkdir()
    (frontend / "index.html").write_text("<title>the frontend</title>")
    path = str(tmp_path / "served.db")
    with LocalAttrDB(path) as db:
        fill(db)
    with running_server(Settings(db=path, frontend_dir=frontend)) as url:
        assert "the frontend" in httpx.get(f"{url}/", timeout=30).text
        for page, marker in [("/docs", "SwaggerUIBundle"), ("/redoc", "redoc.standalone.js")]:
            assert marker in httpx.get(f"{url}{page}", timeout=30).text, page
        assert httpx.get(f"{url}/docs-assets/swagger-ui.css", timeout=30).status_code == 200
