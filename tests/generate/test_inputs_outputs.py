"""Stored graphs hold their token-embedding inputs (`wte`) and likely next tokens (`output`)
unless asked not to; the choice is provenance, and the pseudo-layers stay out of the index."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from locattr import LocalAttrDB
from locattr.compute import load_run
from locattr.demo import demo_run_path
from locattr.generate import GenerateError, GenerateOptions, generate
from locattr.graph import OUTPUT_LAYER, PSEUDO_LAYERS, WTE_LAYER, Graph
from locattr.storage import ComponentKey
from locattr.storage.reads import LayerCache, component_mean_ci
from tests.compute.spd_runs import RunSpec, write_run
from tests.generate.builds import assert_consistent, graphs_by_identity

GENERATE = str(Path(sys.executable).with_name("locattr-generate"))
N_PROMPTS, N_CTX, CONTEXT_WINDOWS = 3, 10, 4
ARGS = ["--model", "demo", "--n-prompts", str(N_PROMPTS), "--n-ctx", str(N_CTX)]
ARGS += ["--context-windows", str(CONTEXT_WINDOWS), "--device", "cpu"]
GRAPH_KEYS = ("inputs", "outputs", "output_prob_threshold")


def options(output: Path, **overrides: object) -> GenerateOptions:
    """The Python API's equivalent of `ARGS`, so both build the same prompts."""
    values: dict[str, object] = {
        "model": "demo",
        "output": str(output),
        "n_prompts": N_PROMPTS,
        "n_ctx": N_CTX,
        "context_windows": CONTEXT_WINDOWS,
        "device": "cpu",
    }
    values.update(overrides)
    return GenerateOptions(**values)  # type: ignore[arg-type]


def build(output: Path, *extra: str) -> Path:
    result = subprocess.run(
        [GENERATE, *ARGS, "--output", str(output), *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return output


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built with locattr-generate's defaults."""
    return build(tmp_path_factory.mktemp("full") / "full.db")


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("bare") / "bare.db", "--no-inputs", "--no-outputs")


def graph_keys(path: Path) -> tuple[object, ...]:
    with LocalAttrDB(path, readonly=True) as db:
        meta = db.get_meta()
    return tuple(meta[key] for key in GRAPH_KEYS)


NodeKey = tuple[str, int, int]
EdgeKey = tuple[str, int, int, str, int, int]


def decomposed_part(graph: Graph) -> tuple[dict[NodeKey, float], dict[EdgeKey, float]]:
    """Nodes and edges outside the pseudo-layers, keyed by layer, position and component."""
    nodes: dict[NodeKey, float] = {
        (n.layer, n.pos, n.component): n.ci for n in graph.nodes if n.layer not in PSEUDO_LAYERS
    }
    edges: dict[EdgeKey, float] = {
        (*e[:6],): e.value
        for e in graph.edges
        if e.source_layer not in PSEUDO_LAYERS and e.target_layer not in PSEUDO_LAYERS
    }
    return nodes, edges


def test_every_graph_holds_inputs_at_each_position_and_likely_outputs(full: Path) -> None:
    vocab = len(load_run(demo_run_path()).tokenizer)
    assert graph_keys(full) == (True, True, 0.01)
    with LocalAttrDB(full, readonly=True) as db:
        prompts = list(db.iter_prompts())
        graphs = [db.get_graph(info.id) for info in prompts]
    assert len(prompts) == N_PROMPTS
    for info, graph in zip(prompts, graphs, strict=True):
        assert graph is not None
        layer = np.array(graph.layers)[graph.node_layer]
        wte, out = layer == WTE_LAYER, layer == OUTPUT_LAYER
        assert sorted(graph.node_pos[wte].tolist()) == list(range(len(info.token_ids)))
        assert set(graph.node_component[wte].tolist()) == {0} and np.all(graph.node_ci[wte] == 1)
        probs, tokens = graph.node_ci[out], graph.node_component[out]
        positions = graph.node_pos[out]
        assert out.any() and np.all((probs >= 0.01) & (probs <= 1))
        assert tokens.min() >= 0 and tokens.max() < vocab
        for pos in set(positions.tolist()):
            assert probs[positions == pos].sum() <= 1 + 1e-5  # probabilities of distinct tokens
        edges = graph.edge_arrays()
        assert (edges["source_layer"] == WTE_LAYER).any()
        assert (edges["target_layer"] == OUTPUT_LAYER).any()
        assert not (edges["target_layer"] == WTE_LAYER).any()
        assert not (edges["source_layer"] == OUTPUT_LAYER).any()


def test_no_inputs_no_outputs_leave_them_out_and_nothing_else(full: Path, bare: Path) -> None:
    assert graph_keys(bare) == (False, False, None)
    with_extras, without = graphs_by_identity(str(full)), graphs_by_identity(str(bare))
    assert sorted(with_extras) == sorted(without)
    for identity, graph in without.items():
        assert not PSEUDO_LAYERS & set(graph.layers)
        nodes, edges = decomposed_part(graph)
        full_nodes, full_edges = decomposed_part(with_extras[identity])
        assert nodes.keys() == full_nodes.keys() and edges.keys() == full_edges.keys()
        assert np.allclose([nodes[k] for k in nodes], [full_nodes[k] for k in nodes], rtol=1e-5)
        assert np.allclose(
            [edges[k] for k in edges], [full_edges[k] for k in edges], rtol=1e-4, atol=1e-6
        )


def test_a_higher_output_threshold_keeps_only_likelier_tokens(tmp_path: Path, full: Path) -> None:
    strict_path = tmp_path / "strict.db"
    assert generate(options(strict_path, output_prob_threshold=0.2)).added == N_PROMPTS
    assert graph_keys(strict_path) == (True, True, 0.2)
    loose, strict = graphs_by_identity(str(full)), graphs_by_identity(str(strict_path))
    for identity, graph in strict.items():
        outputs = {(n.pos, n.component) for n in graph.nodes if n.layer == OUTPUT_LAYER}
        likely = {
            (n.pos, n.component)
            for n in loose[identity].nodes
            if n.layer == OUTPUT_LAYER and n.ci >= 0.2
        }
        assert outputs == likely


def test_the_index_and_its_reads_leave_pseudo_layers_out(full: Path) -> None:
    assert_consistent(str(full))
    with LocalAttrDB(full, readonly=True) as db, db.engine.connect() as connection:
        graphs = [db.get_graph(info.id) for info in db.iter_prompts()]
        indexed = connection.execute(text("SELECT count(*) FROM component_activations"))
        n_rows = indexed.scalar_one()
        mean_ci = [component_mean_ci(connection, LayerCache(), g) for g in graphs if g]
        layers = db.get_layers()
        active = db.get_unique_components()
        searched = db.find_prompts_with_components([f"{WTE_LAYER}:0"], require_all=False)
    firing = [
        {(n.layer, n.component) for n in g.nodes if n.layer not in PSEUDO_LAYERS}
        for g in graphs
        if g
    ]
    assert n_rows == sum(len(f) for f in firing) > 0
    assert not PSEUDO_LAYERS & set(layers)
    assert active and not PSEUDO_LAYERS & {ComponentKey.parse(k).layer for k in active}
    assert (searched.total, searched.unknown_keys) == (0, [f"{WTE_LAYER}:0"])
    for values, components in zip(mean_ci, firing, strict=True):
        assert values and set(values) <= {f"{layer}:{c}" for layer, c in components}


def test_extending_with_another_choice_is_refused_naming_the_flag(full: Path, bare: Path) -> None:
    with pytest.raises(GenerateError, match=r"inputs=True, not False.*rerun without --no-inputs"):
        generate(options(full, include_inputs=False))
    with pytest.raises(GenerateError, match=r"outputs=False, not True.*pass --no-outputs"):
        generate(options(bare, include_inputs=False))
    with pytest.raises(
        GenerateError, match=r"output_prob_threshold=0.01, not 0.05.*--output-prob-threshold 0.01"
    ):
        generate(options(full, output_prob_threshold=0.05))
    assert graph_keys(full) == (True, True, 0.01) and graph_keys(bare) == (False, False, None)


def test_an_older_database_counts_as_built_without_inputs_and_outputs(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    generate(options(path, n_prompts=1, include_inputs=False, include_outputs=False))
    with LocalAttrDB(path) as db, db.engine.begin() as connection:
        connection.execute(text("DELETE FROM meta WHERE key IN ('inputs', 'outputs')"))
        connection.execute(text("DELETE FROM meta WHERE key = 'output_prob_threshold'"))
    with pytest.raises(GenerateError, match=r"inputs=False, not True.*pass --no-inputs"):
        generate(options(path, n_prompts=2))
    extended = generate(options(path, n_prompts=2, include_inputs=False, include_outputs=False))
    assert extended.added == 1 and graph_keys(path) == (False, False, None)


def test_a_decomposed_embedding_is_the_input_layer_and_is_indexed(tmp_path: Path) -> None:
    """Its components are the input nodes; there is no `wte` pseudo-layer to add."""
    spec = RunSpec(patterns=("wte", "h.*.attn.*_proj", "h.*.mlp.c_fc"), ci_fn_type="mlp", n_layer=1)
    run_dir = write_run(tmp_path, spec)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"token_ids": [3, 7, 1, 12, 5, 9, 2]}\n{"token_ids": [4, 8, 2, 13]}\n')
    path = tmp_path / "embedding.db"
    assert generate(options(path, model=str(run_dir), prompts_file=prompts)).added == 2
    assert graph_keys(path) == (False, True, 0.01)
    assert_consistent(str(path))
    with LocalAttrDB(path, readonly=True) as db:
        assert db.get_layers()[WTE_LAYER] == spec.C
        active = db.get_unique_components()
        graphs = [db.get_graph(info.id) for info in db.iter_prompts()]
    assert any(ComponentKey.parse(k).layer == WTE_LAYER for k in active)
    for graph in graphs:
        assert graph is not None
        layer = np.array(graph.layers)[graph.node_layer]
        assert (layer == OUTPUT_LAYER).any()
        assert set(graph.node_component[layer == WTE_LAYER].tolist()) <= set(range(spec.C))


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.5, float("nan")])
def test_the_python_api_refuses_a_threshold_that_is_no_probability(
    tmp_path: Path, threshold: float
) -> None:
    with pytest.raises(GenerateError, match=r"expected a probability in \(0, 1\]"):
        options(tmp_path / "x.db", output_prob_threshold=threshold)
