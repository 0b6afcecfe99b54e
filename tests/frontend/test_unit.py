"""The frontend's own unit tests (Vitest: layout, filters, URL state, graph files)."""

import subprocess

from tests.frontend.conftest import FRONTEND


def test_vitest() -> None:
    vitest = FRONTEND / "node_modules" / ".bin" / "vitest"
    assert vitest.is_file(), "the frontend's npm packages are missing: run `make install`"
    result = subprocess.run(
        [str(vitest), "run", "--reporter=dot"],
        cwd=FRONTEND,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
