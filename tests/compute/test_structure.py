"""Discovered layer pairs match each architecture's known wiring, with no names in the code."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from locattr.compute import load_run
from locattr.graph import OUTPUT_LAYER, WTE_LAYER

from .spd_runs import RunSpec

RESIDUAL_WRITERS = re.compile(r"h\.(\d+)\.(attn\.o_proj|mlp\.down_proj)$")


def _block(name: str) -> int:
    return int(name.split(".")[1])


def expected_pairs(paths: tuple[str, ...], mlp_in: tuple[str, ...]) -> set[tuple[str, str, bool]]:
    """(source, target, crosses) from the architecture's wiring, as the original tabulated it."""
    pairs: set[tuple[str, str, bool]] = set()
    writers = [p for p in paths if RESIDUAL_WRITERS.search(p)]
    for target in paths:
        block, kind = _block(target), target.split(".", 2)[2]
        if kind in ("attn.q_proj", "attn.k_proj", "attn.v_proj"):
            sources = [w for w in writers if _block(w) < block]
            pairs |= {(s, target, False) for s in sources} | {(WTE_LAYER, target, False)}
        elif kind == "attn.o_proj":
            pairs.add((f"h.{block}.attn.q_proj", target, False))
            pairs |= {(f"h.{block}.attn.{p}", target, True) for p in ("k_proj", "v_proj")}
        elif kind in tuple(f"mlp.{m}" for m in mlp_in):
            sources = [w for w in writers if _block(w) < block or w == f"h.{block}.attn.o_proj"]
            pairs |= {(s, target, False) for s in sources} | {(WTE_LAYER, target, False)}
        elif kind == "mlp.down_proj":
            pairs |= {(f"h.{block}.mlp.{m}", target, False) for m in mlp_in}
    pairs |= {(w, OUTPUT_LAYER, False) for w in writers} | {(WTE_LAYER, OUTPUT_LAYER, False)}
    return pairs


@pytest.mark.parametrize(
    ("arch", "mlp_in"),
    [
        ("GPT2Simple", ("c_fc",)),
        ("LlamaSimpleMLP", ("c_fc",)),
        ("LlamaSimple", ("gate_proj", "up_proj")),
    ],
)
def test_structure_matches_architecture(
    write_spd_run: Callable[[RunSpec], Path], arch: str, mlp_in: tuple[str, ...]
) -> None:
    spec = RunSpec(arch=arch, n_layer=3)  # type: ignore[arg-type]
    run = load_run(write_spd_run(spec), with_tokenizer=False)
    structure = run.structure
    found = {(p.source, p.target, p.crosses_positions) for p in structure.pairs}
    assert found == expected_pairs(run.model.module_paths, mlp_in)
    assert all(p.causal for p in structure.pairs)
    assert structure.layers == (WTE_LAYER, *run.model.module_paths, OUTPUT_LAYER)


def test_hf_gpt2_fused_attention(write_spd_run: Callable[[RunSpec], Path]) -> None:
    """HF GPT-2: fused c_attn -> c_proj crosses positions (k, v inside); c_fc -> c_proj doesn't."""
    run = load_run(write_spd_run(RunSpec(arch="GPT2LMHeadModel")), with_tokenizer=False)
    pairs = {(p.source, p.target): p.crosses_positions for p in run.structure.pairs}
    assert pairs["transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj"] is True
    assert pairs["transformer.h.0.mlp.c_fc", "transformer.h.0.mlp.c_proj"] is False
    assert pairs["transformer.h.0.attn.c_proj", "transformer.h.1.attn.c_attn"] is False
    assert ("transformer.h.0.mlp.c_fc", "transformer.h.1.attn.c_attn") not in pairs


def test_identity_layer_feeds_its_module(write_spd_run: Callable[[RunSpec], Path]) -> None:
    spec = RunSpec(identity_patterns=("h.*.mlp.down_proj",), n_layer=1)
    run = load_run(write_spd_run(spec), with_tokenizer=False)
    pair = run.structure.pair("h.0.mlp.down_proj.pre_identity", "h.0.mlp.down_proj")
    assert pair is not None and not pair.crosses_positions
    assert run.structure.pair("h.0.mlp.c_fc", "h.0.mlp.down_proj.pre_identity") is not None
    assert run.structure.pair("h.0.mlp.c_fc", "h.0.mlp.down_proj") is None
