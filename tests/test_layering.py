"""The layering contract (`tools/check_layers.py`, run by `make lint`) holds, and catches what
it is there to catch."""

from __future__ import annotations

from pathlib import Path

from tools.check_layers import import_time_violations, static_violations


def test_the_packages_keep_to_their_layers() -> None:
    assert static_violations() == []
    assert import_time_violations() == []


def test_a_lazy_sqlalchemy_import_in_compute_is_caught(tmp_path: Path) -> None:
    compute = tmp_path / "locattr" / "compute"
    compute.mkdir(parents=True)
    (compute / "fine.py").write_text("import numpy\nfrom locattr.graph import Graph\n")
    (compute / "leak.py").write_text("def f():\n    from sqlalchemy.orm import Session\n")
    (tmp_path / "locattr" / "storage").mkdir()
    (tmp_path / "locattr" / "storage" / "model.py").write_text("import torch.nn\n")
    found = static_violations(tmp_path)
    assert len(found) == 2
    assert found[0].startswith("locattr/compute/leak.py:2: imports sqlalchemy.orm")
    assert found[1].startswith("locattr/storage/model.py:1: imports torch.nn")


def test_a_module_that_loads_torch_is_caught() -> None:
    assert import_time_violations(("locattr.compute",)) == [
        "import locattr.compute loads torch (import compute inside the function)"
    ]
