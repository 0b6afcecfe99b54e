"""`locattr demo` (what `make demo` runs): builds the demo database, then serves it."""

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from locattr import LocalAttrDB
from tests.api.server import free_port

LOCATTR = str(Path(sys.executable).with_name("locattr"))


@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "from-before-inputs"])
def test_demo_builds_then_serves(tmp_path: Path, existing: bool) -> None:
    """A demo database from before graphs held inputs and outputs is rebuilt, not refused."""
    port = free_port()
    db = tmp_path / "data" / "demo.db"
    if existing:
        db.parent.mkdir()
        with LocalAttrDB(db) as old:
            old.set_meta({"run": "demo", "n_ctx": 32})
    server = subprocess.Popen(
        [LOCATTR, "demo", "--db", str(db), "--n-prompts", "4", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            assert time.monotonic() < deadline, "the demo server did not come up in 180 s"
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.5)
        assert health.json() == {"status": "ok", "prompt_count": 4}
        graph = httpx.get(f"http://127.0.0.1:{port}/api/prompt/1", params={"top_k": 5}).json()
        assert len(graph["edges"]) == 5 and graph["tokens"]
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert f"http://127.0.0.1:{port}" in output
    assert ("rebuilding it" in output) == existing
    with LocalAttrDB(db, readonly=True) as built:
        assert built.get_meta()["inputs"] is True
