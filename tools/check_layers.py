"""The import-layering contract of DESIGN.md, checked by `make lint`.

Packages import only downward: `compute` knows nothing of SQLAlchemy or of the packages above
it; `storage` never imports torch or `compute`; `storage`, `api` and `cli` load without torch
(they import `compute` lazily, inside the functions that need a model), so serving and querying
a database starts fast on a machine without a GPU stack. The first two rules are read from the
source (every import statement, at any depth); the last by importing the packages in a fresh
interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


@dataclass(frozen=True)
class Rule:
    package: str
    forbidden: tuple[str, ...]
    why: str


RULES = (
    Rule(
        "locattr.compute",
        ("sqlalchemy", "locattr.storage", "locattr.api", "locattr.cli", "locattr.generate"),
        "compute is the bottom layer: graphs in, no database",
    ),
    Rule(
        "locattr.storage",
        ("torch", "locattr.compute", "locattr.api", "locattr.cli", "locattr.generate"),
        "storage reads and writes graphs without a model",
    ),
)

LOADS_WITHOUT_TORCH = ("locattr.storage", "locattr.api.app", "locattr.cli.main")
"""Modules whose import must not load torch (they import `compute` only inside functions)."""


def imported_names(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every import statement in the file, including those in functions."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def static_violations(src: Path = SRC) -> list[str]:
    found = []
    for rule in RULES:
        for path in sorted((src / rule.package.replace(".", "/")).rglob("*.py")):
            for line, name in imported_names(path):
                if any(name == f or name.startswith(f + ".") for f in rule.forbidden):
                    where = path.relative_to(src)
                    found.append(f"{where}:{line}: imports {name} ({rule.why})")
    return found


def import_time_violations(modules: tuple[str, ...] = LOADS_WITHOUT_TORCH) -> list[str]:
    found = []
    for module in modules:
        probe = f"import sys, {module}; print('torch' in sys.modules)"
        result = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            found.append(f"import {module} failed: {result.stderr.strip().splitlines()[-1]}")
        elif result.stdout.strip() != "False":
            found.append(f"import {module} loads torch (import compute inside the function)")
    return found


def main() -> int:
    violations = static_violations() + import_time_violations()
    for violation in violations:
        print(violation, file=sys.stderr)
    print(f"layering: {len(violations)} violation(s)" if violations else "layering: ok")
    return 1 if violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
