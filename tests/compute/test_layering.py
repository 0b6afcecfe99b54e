"""`locattr.compute` stays below storage: importing it pulls in neither SQLAlchemy nor storage."""

from __future__ import annotations

import subprocess
import sys


def test_compute_imports_no_storage() -> None:
    code = (
        "import sys, locattr.compute, locattr.compute.activation_contexts; "
        "bad = [m for m in sys.modules if m.startswith(('sqlalchemy', 'locattr.storage'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
