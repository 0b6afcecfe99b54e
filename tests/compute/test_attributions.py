"""The fast path against the per-unit reference, on real SPD-format runs of every kind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from locattr.compute import LoadedRun, compute_graph, compute_graphs, load_run
from locattr.compute.attribution import blocks
from locattr.compute.attribution.blocks import PositionBlock
from locattr.compute.component_model import (
    CACHE_INPUTS,
    DeltaTerm,
    ForwardPlan,
    KnownOutputs,
)
from locattr.graph import OUTPUT_LAYER, WTE_LAYER, Graph

from .reference import reference_graph, reference_spd_app_graph
from .spd_runs import TEST_DEVICE, RunSpec

TOKENS = [3, 7, 1, 12, 5, 9, 2]
CI_FNS = ("mlp", "vector_mlp", "shared_mlp")
SIGMOIDS = ("normal", "hard", "leaky_hard", "upper_leaky_hard", "lower_leaky_hard", "swish_hard")

VARIANTS = {
    **{arch: RunSpec(arch=arch) for arch in ("GPT2Simple", "LlamaSimple", "LlamaSimpleMLP")},
    "hf_gpt2": RunSpec(arch="GPT2LMHeadModel"),
    "legacy_keys": RunSpec(legacy_keys=True, steps=(2, 10, 9)),
    "per_module_C": RunSpec(
        arch="LlamaSimple",
        per_module_C=(
            ("h.*.attn.*_proj", 5),
            ("h.*.mlp.gate_proj", 7),
            ("h.*.mlp.up_proj", 4),
            ("h.*.mlp.down_proj", 9),
        ),
    ),
    "identity": RunSpec(identity_patterns=("h.*.mlp.down_proj",), n_layer=1),
    "embedding_components": RunSpec(
        patterns=("wte", "h.*.attn.*_proj", "h.*.mlp.c_fc"), ci_fn_type="mlp", n_layer=1
    ),
    "no_gqa": RunSpec(
        arch="LlamaSimple",
        patterns=("h.*.attn.c_attn", "h.*.attn.o_proj", "h.*.mlp.down_proj"),
        extra_model_config=(("use_grouped_query_attention", False),),
    ),
    "rotary_adjacent": RunSpec(
        arch="LlamaSimpleMLP", extra_model_config=(("rotary_adjacent_pairs", True),)
    ),
}


def _load64(write: Callable[[RunSpec], Path], spec: RunSpec) -> LoadedRun:
    return load_run(write(spec), TEST_DEVICE, dtype=torch.float64)


def _assert_same(run: LoadedRun, **options: object) -> None:
    fast = compute_graph(run, TOKENS, **options)  # type: ignore[arg-type]
    reference = reference_graph(run, TOKENS, **options)  # type: ignore[arg-type]
    assert fast.n_nodes == reference.n_nodes and fast.n_edges == reference.n_edges
    assert fast.n_edges > 0
    assert fast.same_as(reference, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", VARIANTS)
def test_fast_path_equals_reference(write_spd_run: Callable[[RunSpec], Path], name: str) -> None:
    run = _load64(write_spd_run, VARIANTS[name])
    _assert_same(run)
    extras = {"include_output": True, "include_wte": run.structure.has_wte}
    _assert_same(run, **extras)
    _assert_same(run, mode="target")
    app = compute_graph(run, TOKENS, mode="spd_app", **extras)  # type: ignore[arg-type]
    app_reference = reference_spd_app_graph(run, TOKENS, **extras)  # type: ignore[arg-type]
    assert app.n_edges == app_reference.n_edges > 0
    assert app.same_as(app_reference, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("ci_fn", CI_FNS)
@pytest.mark.parametrize("sigmoid", SIGMOIDS)
def test_every_ci_fn_and_sigmoid(
    write_spd_run: Callable[[RunSpec], Path], ci_fn: str, sigmoid: str
) -> None:
    spec = RunSpec(n_layer=1, ci_fn_type=ci_fn, sigmoid_type=sigmoid, ci_fn_hidden_dims=(4, 3))  # type: ignore[arg-type]
    run = _load64(write_spd_run, spec)
    _assert_same(run, ci_threshold=0.05)


def test_float32_within_relative_tolerance(write_spd_run: Callable[[RunSpec], Path]) -> None:
    """Same candidate edges (no threshold, original's position rule); values within 1e-5."""
    run = load_run(write_spd_run(RunSpec(arch="LlamaSimpleMLP")), TEST_DEVICE)
    fast = compute_graph(run, TOKENS, attr_threshold=0.0)
    reference = reference_graph(run, TOKENS, attr_threshold=0.0, structure=run.structure)
    assert fast.same_as(reference, rtol=1e-5, atol=1e-7)


def test_nodes_are_exactly_the_alive_units(write_spd_run: Callable[[RunSpec], Path]) -> None:
    run = load_run(write_spd_run(RunSpec()), TEST_DEVICE)
    threshold = 0.2
    graph = compute_graph(run, TOKENS, ci_threshold=threshold, attr_threshold=10.0)
    assert graph.n_edges == 0
    tokens = torch.tensor([TOKENS], device=run.device)
    with torch.no_grad():
        ci, _ = run.model.causal_importances(run.model(tokens, CACHE_INPUTS).inputs)
    expected = {
        (layer, s, c): float(ci[layer][0, s, c])
        for layer in run.model.module_paths
        for s, c in (ci[layer][0] >= threshold).nonzero().tolist()
    }
    got = {(n.layer, n.pos, n.component): n.ci for n in graph.nodes}
    assert got.keys() == expected.keys()
    assert np.allclose([got[k] for k in expected], list(expected.values()))


def test_batched_prompts_equal_single_prompts(write_spd_run: Callable[[RunSpec], Path]) -> None:
    run = _load64(write_spd_run, RunSpec(arch="LlamaSimple"))
    prompts = [TOKENS, TOKENS[::-1], [4] * len(TOKENS)]
    options = {"include_wte": True, "include_output": True}
    batched = compute_graphs(run, prompts, **options)  # type: ignore[arg-type]
    for prompt, graph in zip(prompts, batched, strict=True):
        single = compute_graph(run, prompt, **options)  # type: ignore[arg-type]
        assert graph.same_as(single, rtol=1e-9, atol=1e-12)


def test_small_chunks_change_nothing(write_spd_run: Callable[[RunSpec], Path]) -> None:
    run = _load64(write_spd_run, RunSpec())
    whole = compute_graph(run, TOKENS)
    chunked = compute_graph(run, TOKENS, chunk_bytes=1)
    assert whole.same_as(chunked, rtol=1e-12, atol=0)


def test_pseudo_layers_are_first_and_last(write_spd_run: Callable[[RunSpec], Path]) -> None:
    run = load_run(write_spd_run(RunSpec()), TEST_DEVICE)
    graph = compute_graph(run, TOKENS, include_wte=True, include_output=True)
    assert graph.layers[0] == WTE_LAYER and graph.layers[-1] == OUTPUT_LAYER
    wte_nodes = [n for n in graph.nodes if n.layer == WTE_LAYER]
    assert [n.pos for n in wte_nodes] == list(range(len(TOKENS)))
    output_probs = [n.ci for n in graph.nodes if n.layer == OUTPUT_LAYER]
    assert output_probs and min(output_probs) >= 0.01


def test_target_mode_forward_is_the_target_model(write_spd_run: Callable[[RunSpec], Path]) -> None:
    run = _load64(write_spd_run, RunSpec(arch="GPT2LMHeadModel"))
    model, tokens = run.model, torch.tensor([TOKENS], device=run.device)
    with torch.no_grad():
        plain = model(tokens).output
        ones = torch.ones(tokens.shape, dtype=torch.float64, device=run.device)
        masks = {
            p: torch.ones(
                1, len(TOKENS), model.components(p).C, dtype=torch.float64, device=run.device
            )
            for p in model.module_paths
        }
        deltas = {p: DeltaTerm(w, ones) for p, w in model.weight_deltas().items()}
        replaced = model(tokens, ForwardPlan(masks=masks, deltas=deltas)).output
        masked_only = model(tokens, ForwardPlan(masks=masks)).output
    assert torch.allclose(plain, replaced, atol=1e-10)
    assert not torch.allclose(plain, masked_only, atol=1e-3)


REAL_SHAPED = RunSpec(
    arch="LlamaSimpleMLP",
    n_layer=4,
    n_embd=32,
    n_head=4,
    vocab_size=64,
    C=40,
    ci_fn_hidden_dims=(24,),
    dead_fraction=0.85,
)
LONG_TOKENS = [3, 7, 1, 12, 5, 9, 2, 40, 33, 61]


def test_real_shaped_run_with_wide_C(write_spd_run: Callable[[RunSpec], Path]) -> None:
    """C wider than d_model, 4 layers and heads: gradients are projected onto alive units only."""
    run = _load64(write_spd_run, REAL_SHAPED)
    options = {"include_wte": True, "include_output": True, "ci_threshold": 0.1}
    reference = reference_graph(run, LONG_TOKENS, **options)  # type: ignore[arg-type]
    assert reference.n_edges > 0
    for chunk_bytes in (1 << 30, 1 << 16):
        fast = compute_graph(run, LONG_TOKENS, chunk_bytes=chunk_bytes, **options)  # type: ignore[arg-type]
        assert fast.same_as(reference, rtol=1e-9, atol=1e-12)


def _per_position_alive(run: LoadedRun, threshold: float) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        ci, _ = run.model.causal_importances(
            run.model(torch.tensor([TOKENS], device=run.device), CACHE_INPUTS).inputs
        )
    return {p: (v[0] >= threshold).sum(-1) for p, v in ci.items()}


def test_positions_with_no_alive_source(write_spd_run: Callable[[RunSpec], Path]) -> None:
    run = _load64(write_spd_run, RunSpec(arch="LlamaSimple", C=8))
    threshold = 0.45
    counts = _per_position_alive(run, threshold)
    assert any(bool((n == 0).any() and (n > 0).any()) for n in counts.values())
    _assert_same(run, ci_threshold=threshold)


def _kill(run: LoadedRun, paths: tuple[str, ...]) -> None:
    """Make every component of these layers dead (CI ~ 0) by shifting the CI function's output."""
    with torch.no_grad():
        for path in paths:
            last = run.model.ci_fn(path).layers[-1]
            last.b -= 1e3  # type: ignore[operator]


def test_dead_source_and_target_layers(write_spd_run: Callable[[RunSpec], Path]) -> None:
    """k/v dead: o_proj's position-crossing group has no sources; a dead o_proj has no rows."""
    run = _load64(write_spd_run, RunSpec(arch="GPT2Simple"))
    _kill(run, ("h.0.attn.k_proj", "h.0.attn.v_proj", "h.1.attn.o_proj", "h.1.mlp.c_fc"))
    counts = _per_position_alive(run, 1e-6)
    assert int(counts["h.0.attn.k_proj"].sum()) == 0 and int(counts["h.1.mlp.c_fc"].sum()) == 0
    assert int(counts["h.0.attn.o_proj"].sum()) > 0
    _assert_same(run)
    _assert_same(run, include_output=True, include_wte=True)


def test_leaf_outputs_forward_is_the_masked_forward(
    write_spd_run: Callable[[RunSpec], Path],
) -> None:
    """Same logits, and d/d(acts) = (d/d(output) @ U.T) * mask, the identity the fast path uses."""
    run = _load64(write_spd_run, RunSpec())
    model, tokens = run.model, torch.tensor([TOKENS], device=run.device)
    with torch.no_grad():
        ci, _ = model.causal_importances(model(tokens, CACHE_INPUTS).inputs)
    with torch.enable_grad():
        acts = model(tokens, ForwardPlan(masks=ci, leaves="acts"))
        outs = model(tokens, ForwardPlan(masks=ci, leaves="outputs"))
    assert torch.allclose(acts.output, outs.output, rtol=1e-12, atol=1e-12)
    path = model.module_paths[-1]
    logit = (acts.output[0, -1, 0], outs.output[0, -1, 0])
    (grad_acts,) = torch.autograd.grad(logit[0], [acts.post[path]])
    (grad_out,) = torch.autograd.grad(logit[1], [outs.outputs[path]])
    projected = (grad_out @ model.components(path).U.T) * ci[path]
    assert torch.allclose(grad_acts, projected, rtol=1e-10, atol=1e-12)


def test_prefix_forward_reusing_known_leaves(write_spd_run: Callable[[RunSpec], Path]) -> None:
    """A forward over the first positions that takes its leaves from the whole prompt's forward
    computes what one of its own does, and only the asked-for leaves take gradients."""
    run = _load64(write_spd_run, RunSpec(arch="LlamaSimple"))
    model, tokens = run.model, torch.tensor([TOKENS], device=run.device)
    with torch.no_grad():
        ci = model.lower_leaky_ci(model(tokens, CACHE_INPUTS).inputs)
    stop, path = 4, model.module_paths[1]
    short = {p: m[:, :stop] for p, m in ci.items()}
    with torch.enable_grad():
        full = model(tokens, ForwardPlan(masks=ci, leaves="outputs"))
        own = model(tokens[:, :stop], ForwardPlan(masks=short, leaves="outputs"))
        known = KnownOutputs(full.outputs, grad_leaves={path})
        reused = model(tokens[:, :stop], ForwardPlan(masks=short, leaves="outputs", known=known))
    assert torch.allclose(reused.output, own.output, rtol=1e-12, atol=1e-12)
    for name in model.module_paths:
        assert torch.allclose(reused.inputs[name], own.inputs[name], rtol=1e-12, atol=1e-12)
        assert torch.equal(reused.outputs[name], full.outputs[name][:, :stop])
        assert reused.outputs[name].requires_grad == (name == path)


def test_graphs_come_out_valid_and_canonical(write_spd_run: Callable[[RunSpec], Path]) -> None:
    """compute builds graphs unchecked (`Graph.trusted`); the checked constructor must agree."""
    run = load_run(write_spd_run(RunSpec(arch="LlamaSimple")), TEST_DEVICE)
    prompts = [TOKENS, TOKENS[::-1], [4] * len(TOKENS)]
    for graph in compute_graphs(run, prompts, include_wte=True, include_output=True):
        checked = Graph(
            layers=graph.layers,
            node_layer=graph.node_layer,
            node_pos=graph.node_pos,
            node_component=graph.node_component,
            node_ci=graph.node_ci,
            edge_source=graph.edge_source,
            edge_target=graph.edge_target,
            edge_value=graph.edge_value,
        )
        assert checked.n_edges > 0 and checked.canonical() is checked


PROMPT_24 = [(7 * i + 3) % 32 for i in range(24)]


@pytest.mark.parametrize(("arch", "threshold"), [("GPT2Simple", 1e-4), ("LlamaSimple", 0.0)])
def test_position_blocks_over_prefix_forwards(
    write_spd_run: Callable[[RunSpec], Path],
    monkeypatch: pytest.MonkeyPatch,
    arch: str,
    threshold: float,
) -> None:
    """24 positions in blocks of 8 (shorter than the default, to keep the reference quick): the
    k/v -> o edges come from three blocks of target positions, each over its own prefix
    forward; batched prompts share the blocks. Threshold 0 keeps every candidate, so the masks
    (not exact zeros) must exclude padding and later positions."""
    monkeypatch.setattr(blocks, "MIN_BLOCK_POSITIONS", 8)
    assert blocks.position_blocks(len(PROMPT_24), causal=True) == [
        PositionBlock(0, 8),
        PositionBlock(8, 16),
        PositionBlock(16, 24),
    ]
    run = _load64(write_spd_run, RunSpec(arch=arch, block_size=32))  # type: ignore[arg-type]
    assert sum(p.crosses_positions and p.causal for p in run.structure.pairs) > 0
    prompts = [PROMPT_24, PROMPT_24[::-1]]
    batched = compute_graphs(run, prompts, attr_threshold=threshold)
    for prompt, graph in zip(prompts, batched, strict=True):
        reference = reference_graph(run, prompt, structure=run.structure, attr_threshold=threshold)
        assert graph.n_edges == reference.n_edges > 0
        assert graph.same_as(reference, rtol=1e-9, atol=1e-12)


def test_model_not_causal_outside_the_pairs(
    write_spd_run: Callable[[RunSpec], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Token embeddings mixed with later positions before any decomposed layer: the pairs still
    look causal, but a prefix forward no longer reproduces the prompt's, so no prefix is used."""
    monkeypatch.setattr(blocks, "MIN_BLOCK_POSITIONS", 8)
    run = _load64(write_spd_run, RunSpec(block_size=32))
    target = run.model.target_model
    assert isinstance(target.wte, torch.nn.Embedding)
    target.wte.register_forward_hook(lambda _m, _i, out: out + 0.5 * out.flip(1))
    reference = reference_graph(run, PROMPT_24)
    fast = compute_graph(run, PROMPT_24)
    assert fast.n_edges == reference.n_edges > 0
    assert fast.same_as(reference, rtol=1e-9, atol=1e-12)
