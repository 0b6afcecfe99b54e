"""Fixtures: SPD run directories written once per session, and offline Hugging Face."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from .spd_runs import RunSpec, write_run

os.environ["HF_HUB_OFFLINE"] = "1"

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(scope="session")
def write_spd_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[[RunSpec], Path]:
    """Write (once) and return the run directory for a spec."""
    root = tmp_path_factory.mktemp("spd_runs")
    written: dict[RunSpec, Path] = {}

    def write(spec: RunSpec) -> Path:
        if spec not in written:
            written[spec] = write_run(root, spec, name=f"run{len(written)}")
        return written[spec]

    return write


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCATTR_CACHE_DIR", str(tmp_path / "cache"))
