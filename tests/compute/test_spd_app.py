"""`mode="spd_app"` (the SPD app's graph definition) against its per-unit reference."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from locattr.compute import LoadedRun, compute_graph, compute_graphs, load_run
from locattr.compute.attribution import blocks, stream
from locattr.compute.attribution.modes import app_diagonal_pairs
from locattr.compute.component_model import CACHE_INPUTS, ForwardPlan
from locattr.graph import OUTPUT_LAYER, WTE_LAYER, Graph

from .reference import reference_spd_app_graph
from .spd_runs import TEST_DEVICE, RunSpec

TOKENS = [3, 7, 1, 12, 5, 9, 2]
BUILTINS = ("GPT2Simple", "LlamaSimple", "LlamaSimpleMLP")
APP: dict[str, Any] = {"mode": "spd_app", "include_output": True, "include_wte": True}


def _load64(write: Callable[[RunSpec], Path], spec: RunSpec) -> LoadedRun:
    return load_run(write(spec), TEST_DEVICE, dtype=torch.float64)


def _crossing_edges(graph: Graph) -> int:
    """Edges whose source position is before the target's."""
    pos = graph.node_pos
    return int((pos[graph.edge_source] < pos[graph.edge_target]).sum())


def _assert_same(fast: Graph, reference: Graph) -> None:
    assert fast.n_nodes == reference.n_nodes and fast.n_edges == reference.n_edges > 0
    assert fast.same_as(reference, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("arch", [*BUILTINS, "GPT2LMHeadModel"])
@pytest.mark.parametrize("ci_threshold", [0.0, 0.05])
def test_spd_app_equals_reference(
    write_spd_run: Callable[[RunSpec], Path], arch: str, ci_threshold: float
) -> None:
    """One prompt, with `wte` and `output` nodes and edges crossing positions. GPT-2 from
    `transformers` has no diagonal attention backward: its pairs are seeded one unit per row."""
    run = _load64(write_spd_run, RunSpec(arch=arch))  # type: ignore[arg-type]
    options: dict[str, Any] = {**APP, "ci_threshold": ci_threshold}
    fast = compute_graph(run, TOKENS, **options)
    reference = reference_spd_app_graph(run, TOKENS, **_without_mode(options))
    _assert_same(fast, reference)
    assert _crossing_edges(fast) > 0
    diagonal = app_diagonal_pairs(run.model, run.structure)
    within = {(p.source, p.target) for p in run.structure.pairs if not p.crosses_positions}
    assert (diagonal == within) == (arch in BUILTINS)


@pytest.mark.parametrize("arch", BUILTINS)
def test_spd_app_batched_equals_reference(
    write_spd_run: Callable[[RunSpec], Path], arch: str
) -> None:
    run = _load64(write_spd_run, RunSpec(arch=arch))  # type: ignore[arg-type]
    prompts = [TOKENS, TOKENS[::-1], [4] * len(TOKENS)]
    options: dict[str, Any] = {**APP, "ci_threshold": 0.0, "attr_threshold": 1e-6}
    batched = compute_graphs(run, prompts, **options)
    for prompt, graph in zip(prompts, batched, strict=True):
        reference = reference_spd_app_graph(run, prompt, **_without_mode(options))
        _assert_same(graph, reference)
    chunked = compute_graphs(run, prompts, chunk_bytes=1, **options)
    for whole, small in zip(batched, chunked, strict=True):
        assert whole.same_as(small, rtol=1e-12, atol=0)


PROMPT_24 = [(7 * i + 3) % 32 for i in range(24)]


@pytest.mark.parametrize(("arch", "threshold"), [("GPT2Simple", 1e-4), ("LlamaSimpleMLP", 0.0)])
def test_spd_app_position_blocks(
    write_spd_run: Callable[[RunSpec], Path],
    monkeypatch: pytest.MonkeyPatch,
    arch: str,
    threshold: float,
) -> None:
    """24 positions, blocks of 8: the k/v -> o edges come from three prefix forwards that keep
    the delta terms attached; threshold 0 keeps every candidate, so masks (not exact zeros)
    must exclude later positions."""
    monkeypatch.setattr(blocks, "MIN_BLOCK_POSITIONS", 8)
    run = _load64(write_spd_run, RunSpec(arch=arch, block_size=32))  # type: ignore[arg-type]
    prompts = [PROMPT_24, PROMPT_24[::-1]]
    options: dict[str, Any] = {**APP, "ci_threshold": 0.1, "attr_threshold": threshold}
    batched = compute_graphs(run, prompts, **options)
    for prompt, graph in zip(prompts, batched, strict=True):
        _assert_same(graph, reference_spd_app_graph(run, prompt, **_without_mode(options)))
        assert _crossing_edges(graph) > 0


@pytest.mark.parametrize("arch", BUILTINS)
def test_spd_app_chained_through_the_stream(
    write_spd_run: Callable[[RunSpec], Path], monkeypatch: pytest.MonkeyPatch, arch: str
) -> None:
    """Every target that reads the residual stream is chained through it (the probe finds the
    blocks' writers, o and down projections), here with every block's Jacobian formed (the
    tests' few rows would form none): the edges are still the reference's."""
    monkeypatch.setattr(stream, "JACOBIAN_MIN_ROWS", 0.0)
    run = _load64(write_spd_run, RunSpec(arch=arch))  # type: ignore[arg-type]
    layout = stream.app_stream(run.model, run.structure)
    assert layout.writers[0] == WTE_LAYER
    assert all(name.endswith(("o_proj", "down_proj")) for name in layout.writers[1:])
    reading = {
        p.target
        for p in run.structure.pairs
        if p.source in layout.writers and not p.crosses_positions
    }
    assert layout.chained == reading
    prompts = [TOKENS, TOKENS[::-1]]
    options: dict[str, Any] = {**APP, "ci_threshold": 0.0, "attr_threshold": 1e-6}
    for prompt, graph in zip(prompts, compute_graphs(run, prompts, **options), strict=True):
        _assert_same(graph, reference_spd_app_graph(run, prompt, **_without_mode(options)))


def test_spd_app_model_mixing_positions_elsewhere(
    write_spd_run: Callable[[RunSpec], Path],
) -> None:
    """Token embeddings mixed across positions after the `wte` leaf: the probe finds those
    pairs off the diagonal, so they are seeded one unit per row and still exact."""
    run = _load64(write_spd_run, RunSpec(arch="LlamaSimpleMLP"))
    target = run.model.target_model
    assert isinstance(target.wte, torch.nn.Embedding)
    target.wte.register_forward_hook(lambda _m, _i, out: out + 0.5 * out.flip(1))
    diagonal = app_diagonal_pairs(run.model, run.structure)
    assert not any(source == WTE_LAYER for source, _ in diagonal)
    fast = compute_graph(run, TOKENS, **APP)
    _assert_same(fast, reference_spd_app_graph(run, TOKENS, **_without_mode(APP)))


def test_spd_app_includes_delta_paths(write_spd_run: Callable[[RunSpec], Path]) -> None:
    """Edges between neighbouring layers (nothing between them to carry a delta path) agree
    with `target` mode; edges that span other layers differ, by the paths through their delta
    terms."""
    run = _load64(write_spd_run, RunSpec(arch="LlamaSimpleMLP"))
    options = {"include_wte": True, "include_output": True, "attr_threshold": 0.0}
    app = compute_graph(run, TOKENS, mode="spd_app", **options)
    target = compute_graph(run, TOKENS, mode="target", **options)
    app_edges, target_edges = _edge_values(app), _edge_values(target)
    common = app_edges.keys() & target_edges.keys()
    neighbours = {k for k in common if (k[0], k[3]) == ("h.0.mlp.c_fc", "h.0.mlp.down_proj")}
    spanning = {k for k in common if (k[0], k[3]) == (WTE_LAYER, OUTPUT_LAYER)}
    assert neighbours and spanning
    assert all(np.isclose(app_edges[k], target_edges[k], rtol=1e-9) for k in neighbours)
    assert max(abs(app_edges[k] - target_edges[k]) for k in spanning) > 1e-3


def _edge_values(graph: Graph) -> dict[tuple[object, ...], float]:
    return {
        (
            e.source_layer,
            e.source_pos,
            e.source_component,
            e.target_layer,
            e.target_pos,
            e.target_component,
        ): e.value
        for e in graph.edges
    }


def test_spd_app_alive_and_output_rules(write_spd_run: Callable[[RunSpec], Path]) -> None:
    """Threshold 0: the app's alive set is CI > 0 (the others' CI >= 0 keeps dead units);
    outputs are the tokens the CI-masked model gives more than the threshold, valued by that
    probability, not the target model's."""
    run = _load64(write_spd_run, RunSpec(arch="GPT2Simple", sigmoid_type="hard"))
    model, tokens = run.model, torch.tensor([TOKENS], device=run.device)
    threshold = 0.05
    with torch.no_grad():
        ci = model.lower_leaky_ci(model(tokens, CACHE_INPUTS).inputs)
        masked = model(tokens, ForwardPlan(masks=ci)).output[0].softmax(-1)
    graph = compute_graph(
        run,
        TOKENS,
        mode="spd_app",
        ci_threshold=0.0,
        include_output=True,
        output_prob_threshold=threshold,
        attr_threshold=1e9,
    )
    expected = {
        (layer, s, c): float(ci[layer][0, s, c])
        for layer in model.module_paths
        for s, c in (ci[layer][0] > 0).nonzero().tolist()
    }
    expected |= {
        (OUTPUT_LAYER, s, t): float(masked[s, t])
        for s, t in (masked > threshold).nonzero().tolist()
    }
    got = {(n.layer, n.pos, n.component): n.ci for n in graph.nodes}
    assert got.keys() == expected.keys()
    assert np.allclose([got[k] for k in expected], list(expected.values()), rtol=1e-6)
    dead = sum(int((v == 0).sum()) for v in ci.values())
    everything = compute_graph(run, TOKENS, ci_threshold=0.0, attr_threshold=1e9)
    assert dead > 0 and everything.n_nodes == sum(v.numel() for v in ci.values())


@pytest.mark.parametrize("arch", BUILTINS)
def test_crossing_pairs_are_the_apps(write_spd_run: Callable[[RunSpec], Path], arch: str) -> None:
    """The pairs that keep earlier source positions are the app's: k/v -> o of one block."""
    run = load_run(write_spd_run(RunSpec(arch=arch)), TEST_DEVICE)  # type: ignore[arg-type]

    def is_kv_to_o(source: str, target: str) -> bool:
        kv = "k_proj" in source or "v_proj" in source
        return kv and "o_proj" in target and source.split(".")[1] == target.split(".")[1]

    crossing = {(p.source, p.target) for p in run.structure.pairs if p.crosses_positions}
    expected = {(p.source, p.target) for p in run.structure.pairs if is_kv_to_o(p.source, p.target)}
    assert crossing == expected and crossing


def _without_mode(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k != "mode"}
