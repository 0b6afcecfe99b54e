"""`locattr-generate --mode spd_app`: the graphs stored are the mode's, and the mode is part of
the database's provenance."""

from __future__ import annotations

from pathlib import Path

import pytest

from locattr import LocalAttrDB
from locattr.cli.generate import parser
from locattr.compute import compute_graph, load_run
from locattr.demo import demo_run_path
from locattr.generate import GenerateError
from locattr.storage.codec import ValueDtype
from tests.generate.builds import small_build


def test_generate_stores_spd_app_graphs(tmp_path: Path) -> None:
    assert parser().parse_args(["--model", "demo", "--mode", "spd_app"]).mode == "spd_app"
    with pytest.raises(SystemExit):
        parser().parse_args(["--model", "demo", "--mode", "app"])
    db_path = tmp_path / "app.db"
    small_build(db_path, mode="spd_app", value_precision=ValueDtype.FLOAT32)
    run = load_run(demo_run_path(), with_tokenizer=False)
    with LocalAttrDB(db_path, readonly=True) as db:
        assert db.get_meta()["mode"] == "spd_app"
        prompt = next(iter(db.iter_prompts()))
        stored = db.get_graph(prompt.id)
    assert stored is not None
    options = {"include_wte": True, "include_output": True}
    app = compute_graph(run, prompt.token_ids, mode="spd_app", **options)  # type: ignore[arg-type]
    original = compute_graph(run, prompt.token_ids, **options)  # type: ignore[arg-type]
    assert stored.same_as(app, rtol=1e-4, atol=1e-6)  # float32, computed in a batch
    assert not stored.same_as(original, rtol=1e-3, atol=1e-5)
    with pytest.raises(GenerateError, match="built with mode='spd_app', not 'ci_masked'"):
        small_build(db_path, n_prompts=3, value_precision=ValueDtype.FLOAT32)
