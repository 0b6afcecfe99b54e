"""Write the API's OpenAPI document (what `/openapi.json` serves) without starting a server.

    python frontend/scripts/dump_openapi.py OUT.json

The frontend's types (`src/api/schema.d.ts`) are generated from it with openapi-typescript;
`tests/frontend/test_api_types.py` fails when they drift apart.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from locattr.api import create_app
from locattr.api.settings import Settings


def openapi_json() -> str:
    """The document, deterministic (the app's own key order), as the server would send it."""
    document = create_app(Settings(db="unused.db")).openapi()
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python frontend/scripts/dump_openapi.py OUT.json")
    Path(sys.argv[1]).write_text(openapi_json(), encoding="utf-8")


if __name__ == "__main__":
    main()
