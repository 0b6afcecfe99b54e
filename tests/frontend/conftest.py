"""The built frontend served by the real API over a demo database that `locattr-generate` builds,
driven by Debian's Chromium through Playwright."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

from locattr.api.settings import Settings
from tests.api.server import build_demo_db, running_server

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"
N_PROMPTS = 60  # more than one page of the prompt list (50)
N_CTX = 32
# As root in a container, without GPU, without the background traffic a closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian's chromium is not installed: run `make test` (it runs .ci/browser)")
    return path


def built_frontend() -> Path:
    dist = FRONTEND / "dist"
    if not (dist / "index.html").is_file():
        pytest.fail(f"the frontend is not built ({dist} is missing): run `make install`")
    return dist


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo database built by the project's generator from the shipped demo run."""
    path = tmp_path_factory.mktemp("frontend") / "demo.db"
    build_demo_db(path, N_PROMPTS, N_CTX)
    return path


@pytest.fixture(scope="session")
def app_url(demo_db: Path) -> Iterator[str]:
    with running_server(Settings(db=str(demo_db), frontend_dir=built_frontend())) as url:
        yield url


@pytest.fixture(scope="session")
def model_app_url(demo_db: Path) -> Iterator[str]:
    """The same database served with the demo model held (`locattr serve --model demo`): graphs
    of typed prompts and interventions."""
    settings = Settings(db=str(demo_db), frontend_dir=built_frontend(), model="demo")
    with running_server(settings) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # module scope: Playwright's sync API keeps an asyncio loop marked as running in this
    # thread while it is open, which later tests' asyncio.run() would trip over
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@dataclass
class Console:
    """Everything the page reported as an error: console.error and uncaught exceptions."""

    errors: list[str] = field(default_factory=list)

    def allow(self, fragment: str) -> None:
        """Forget the errors that mention `fragment`: the browser logs every 4xx answer itself,
        also those a test asks for on purpose."""
        self.errors[:] = [error for error in self.errors if fragment not in error]

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} ({message.location})")


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def page(browser: Browser, console: Console) -> Iterator[Page]:
    """A fresh page; the test fails if the page logged any error."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.on("console", console.on_console)
    page.on("pageerror", lambda error: console.errors.append(f"uncaught: {error}"))
    page.set_default_timeout(15_000)
    yield page
    context.close()
    assert console.errors == [], "\n".join(console.errors)
