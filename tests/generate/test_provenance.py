"""One provenance rule: what locattr-generate refuses to extend, locattr merge refuses to join."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from locattr import LocalAttrDB
from locattr.generate import GenerateError, Shard
from locattr.storage.provenance import FIXED_KEYS
from tests.generate.builds import small_build

LOCATTR = str(Path(sys.executable).with_name("locattr"))


def test_a_build_records_every_fixed_key(tmp_path: Path) -> None:
    """A fixed key that no build writes would constrain nothing (as `n_blocks` once did)."""
    small_build(tmp_path / "built.db")
    with LocalAttrDB(tmp_path / "built.db", readonly=True) as db:
        assert set(FIXED_KEYS) <= set(db.get_meta())


def test_merge_refuses_a_shard_built_with_another_n_ctx(tmp_path: Path) -> None:
    first, second, merged = (tmp_path / f"{name}.db" for name in ("a", "b", "merged"))
    small_build(first, shard=Shard.parse("1/2"))
    small_build(second, shard=Shard.parse("2/2"), n_ctx=10)
    result = subprocess.run(
        [LOCATTR, "merge", str(merged), str(first), str(second)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(
        "locattr: error: cannot merge: meta 'n_ctx' differs (10 in the source, 8 in the "
        "destination)"
    )
    with LocalAttrDB(merged, readonly=True) as db:
        assert db.get_prompt_count() == 1  # the first shard's prompt only


def test_generate_refuses_to_extend_a_build_with_another_n_ctx(tmp_path: Path) -> None:
    small_build(tmp_path / "built.db")
    with pytest.raises(GenerateError, match="built with n_ctx=8, not 10"):
        small_build(tmp_path / "built.db", n_ctx=10)
