"""The frontend's API types are generated from the app's OpenAPI document and must not drift."""

import subprocess
import sys
from pathlib import Path

from tests.frontend.conftest import FRONTEND

COMMITTED = FRONTEND / "src" / "api" / "schema.d.ts"


def test_generated_types_match_the_api(tmp_path: Path) -> None:
    generator = FRONTEND / "node_modules" / ".bin" / "openapi-typescript"
    assert generator.is_file(), "the frontend's npm packages are missing: run `make install`"
    document = tmp_path / "openapi.json"
    generated = tmp_path / "schema.d.ts"
    subprocess.run(
        [sys.executable, str(FRONTEND / "scripts" / "dump_openapi.py"), str(document)], check=True
    )
    subprocess.run(
        [str(generator), str(document), "-o", str(generated)],
        cwd=FRONTEND,
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert generated.read_text() == COMMITTED.read_text(), (
        "frontend/src/api/schema.d.ts is out of date with the API: run `make frontend-types` "
        "(and rebuild the frontend with `make install`)"
    )
