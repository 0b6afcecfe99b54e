"""A real uvicorn server on a free local port, in a background thread, for API tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from locattr.api import create_app
from locattr.api.settings import H11_MAX_REQUEST_BYTES, Settings

GENERATE = str(Path(sys.executable).with_name("locattr-generate"))


def build_demo_db(path: Path, n_prompts: int, n_ctx: int = 32) -> Path:
    """A demo database built by `locattr-generate` from the shipped demo run (a real build, in
    its own process, as a user runs it)."""
    result = subprocess.run(
        [GENERATE, "--model", "demo", "--output", str(path), "--n-prompts", str(n_prompts)]
        + ["--n-ctx", str(n_ctx), "--batch-size", "8"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(settings: Settings) -> Iterator[str]:
    """Serve `settings.db` until the block ends; yields the base URL."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="error",
        h11_max_incomplete_event_size=H11_MAX_REQUEST_BYTES,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the API server failed to start")
        assert time.monotonic() < deadline, "the API server did not start in 30 s"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
