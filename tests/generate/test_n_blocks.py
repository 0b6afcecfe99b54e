"""The seed's `--n_blocks` and `--n_ctx`: only the first N blocks' layers are decomposed and
attributed (recorded in provenance, one value per database), and `--n-ctx` defaults to 64 or to
the model's context where that is shorter, as the output line says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from locattr import LocalAttrDB
from locattr.cli.generate import main
from locattr.compute import LocattrComputeError, load_run
from locattr.demo import demo_run_path
from locattr.generate import GenerateError
from tests.compute.spd_runs import RunSpec, write_run
from tests.generate.builds import small_build

LOCATTR = str(Path(sys.executable).with_name("locattr"))
BLOCK_0 = {
    "h.0.attn.q_proj",
    "h.0.attn.k_proj",
    "h.0.attn.v_proj",
    "h.0.attn.o_proj",
    "h.0.mlp.c_fc",
    "h.0.mlp.down_proj",
}


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`locattr-generate ARGS` in this process (exit code, stdout, stderr): no second start of
    torch per call."""
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exit:
        code = int(exit.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_load_run_decomposes_only_the_first_blocks() -> None:
    full = load_run(demo_run_path())
    first = load_run(demo_run_path(), n_blocks=1)
    assert first.n_blocks == 1 and full.n_blocks is None
    assert set(first.model.module_paths) == BLOCK_0
    assert {layer for layer in first.structure.layers if layer.startswith("h.")} == BLOCK_0
    later = first.model.target_model.get_submodule("h.1.mlp.c_fc")
    reference = full.model.target_model.get_submodule("h.1.mlp.c_fc")
    assert isinstance(later, torch.nn.Linear) and isinstance(reference, torch.nn.Linear)
    assert torch.equal(later.weight, reference.weight)  # a plain target module, the run's weight
    tokens = torch.tensor([[3, 7, 1, 12, 5, 9]])
    with torch.no_grad():
        assert torch.equal(first.model.target_model(tokens)[0], full.model.target_model(tokens)[0])
    assert load_run(demo_run_path(), n_blocks=2).n_blocks is None  # every block: no limit
    with pytest.raises(LocattrComputeError, match="more than the 2 blocks.*pass at most 2"):
        load_run(demo_run_path(), n_blocks=3)
    with pytest.raises(LocattrComputeError, match="at least 1"):
        load_run(demo_run_path(), n_blocks=0)


def test_n_blocks_with_legacy_key_names(tmp_path: Path) -> None:
    """Leaving blocks out drops their components after SPD's legacy renames, so the strict load
    of the rest still sees every key it needs and no other."""
    run_dir = write_run(tmp_path, RunSpec(legacy_keys=True, n_layer=3))
    run = load_run(run_dir, n_blocks=2, with_tokenizer=False)
    assert {p.split(".")[1] for p in run.model.module_paths} == {"0", "1"}
    assert len(run.model.module_paths) == 12


def test_blocks_are_found_from_the_module_tree_not_from_names(tmp_path: Path) -> None:
    """HF GPT-2 keeps its blocks at `transformer.h`, with other layer names."""
    run_dir = write_run(tmp_path, RunSpec(arch="GPT2LMHeadModel", n_layer=3))
    run = load_run(run_dir, n_blocks=1, with_tokenizer=False)
    assert run.model.module_paths == (
        "transformer.h.0.attn.c_attn",
        "transformer.h.0.attn.c_proj",
        "transformer.h.0.mlp.c_fc",
        "transformer.h.0.mlp.c_proj",
    )


def test_graphs_hold_only_the_first_blocks_layers_and_provenance_records_it(
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "one-block.db"
    assert small_build(db_path, n_blocks=1, context_windows=4).added == 2
    with LocalAttrDB(db_path, readonly=True) as db:
        assert set(db.get_layers()) == BLOCK_0
        assert db.get_meta()["n_blocks"] == 1
        contexts = db.get_activation_contexts()
        assert contexts and {key.split(":")[0] for key in contexts} <= BLOCK_0
        for info in db.iter_prompts():
            graph = db.get_graph(info.id)
            assert graph is not None and len(graph.edge_value) > 0
            layers = {graph.layers[i] for i in set(graph.node_layer.tolist())}
            assert layers <= BLOCK_0 | {"wte", "output"}
            assert layers & BLOCK_0 and "output" in layers


def test_extending_with_another_n_blocks_is_refused(tmp_path: Path) -> None:
    limited, full = tmp_path / "limited.db", tmp_path / "full.db"
    small_build(limited, n_blocks=1)
    with pytest.raises(GenerateError, match="built with n_blocks=1, not None.*pass --n-blocks 1"):
        small_build(limited)
    small_build(full)
    with LocalAttrDB(full, readonly=True) as db:
        assert db.get_meta()["n_blocks"] is None
    with pytest.raises(GenerateError, match="built with n_blocks=None, not 1.*without --n-blocks"):
        small_build(full, n_blocks=1)
    # The demo has two blocks, so --n-blocks 2 is every block: the same build.
    small_build(full, n_blocks=2, n_prompts=3)
    with LocalAttrDB(full, readonly=True) as db:
        assert db.get_prompt_count() == 3


def test_merge_refuses_a_shard_with_another_n_blocks(tmp_path: Path) -> None:
    first, second, merged = (tmp_path / f"{name}.db" for name in ("a", "b", "merged"))
    small_build(first)
    small_build(second, n_blocks=1)
    result = subprocess.run(
        [LOCATTR, "merge", str(merged), str(first), str(second)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "meta 'n_blocks' differs (1 in the source, None in the destination)" in result.stderr


def test_cli_n_blocks_with_the_original_spelling_and_the_default_n_ctx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(
        capsys, "--model", "demo", "--output", "o.db", "--n_prompts", "1", "--n_blocks", "1",
        "--context-windows", "0", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    assert "1 prompt added (per worker: 1), 0 already stored (shard 1/1), n_ctx 64," in out
    assert "model's context" not in out  # the demo model takes 64 tokens
    with LocalAttrDB(tmp_path / "o.db", readonly=True) as db:
        assert set(db.get_layers()) == BLOCK_0
        assert db.get_meta()["n_ctx"] == 64 and db.get_meta()["n_blocks"] == 1
        (info,) = list(db.iter_prompts())
        assert len(info.token_ids) == 64

    code, _, err = run_cli(capsys, "--model", "demo", "--output", "x.db", "--n-blocks", "0")
    assert code == 2 and "--n-blocks 0: expected at least 1" in err


def test_n_ctx_defaults_to_a_shorter_model_context_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    run_dir = write_run(tmp_path, RunSpec(block_size=16))
    prompts = tmp_path / "prompts.jsonl"
    lines = [json.dumps({"token_ids": [(i * 7 + j) % 32 for j in range(40)]}) for i in range(2)]
    prompts.write_text("\n".join(lines) + "\n")
    args = ["--model", str(run_dir), "--prompts-file", str(prompts), "--n-prompts", "2"]
    code, out, err = run_cli(capsys, *args, "--output", "short.db", "--device", "cpu")
    assert code == 0, err
    assert "n_ctx 16 (the model's context: the default 64 does not fit)" in out
    with LocalAttrDB(tmp_path / "short.db", readonly=True) as db:
        assert db.get_meta()["n_ctx"] == 16
        assert [len(p.token_ids) for p in db.iter_prompts()] == [16, 16]

    code, _, err = run_cli(capsys, *args, "--output", "long.db", "--n-ctx", "20")
    assert code == 2 and "--n-ctx 20 is outside this model's context (1..16)" in err


def test_extending_without_n_ctx_keeps_the_database_n_ctx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A database built before the default became 64 (here: with --n-ctx 8) is extended by the
    same command without --n-ctx, rather than refused for a different n_ctx."""
    monkeypatch.chdir(tmp_path)
    args = ["--model", "demo", "--output", "o.db", "--context-windows", "0", "--device", "cpu"]
    code, out, err = run_cli(capsys, *args, "--n-prompts", "1", "--n-ctx", "8")
    assert code == 0, err
    code, out, err = run_cli(capsys, *args, "--n-prompts", "2")
    assert code == 0, err
    assert "1 prompt added (per worker: 1), 1 already stored (shard 1/1), n_ctx 8," in out
    with LocalAttrDB(tmp_path / "o.db", readonly=True) as db:
        assert [len(p.token_ids) for p in db.iter_prompts()] == [8, 8]
