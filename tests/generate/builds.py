"""Helpers for generate tests: read a built database back as {identity: graph}, check it whole
(index rows, counters, and the corpus tables against an oracle over the stored graphs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import text

from locattr import LocalAttrDB
from locattr.generate import GenerateOptions, GenerateResult, generate
from locattr.graph import Graph
from locattr.storage import corpus_deltas, edge_postings
from locattr.storage.component_lists import unpack
from locattr.storage.edge_rows import ATTRIBUTION_UNIT

PairTotals = dict[tuple[str, str], tuple[int, int, int]]
"""(source key, target key) -> (total, total_abs in attribution units, prompt count)."""
StrongEdges = dict[tuple[str, str, str], tuple[float, int, int]]
"""(prompt identity, source key, target key) -> (value, source position, target position)."""


def small_build(output: Path, **overrides: object) -> GenerateResult:
    """A quick demo build (2 prompts of 8 tokens, no activation contexts) into `output`, with
    any `GenerateOptions` field overridden."""
    values: dict[str, object] = {
        "model": "demo",
        "output": str(output),
        "n_prompts": 2,
        "n_ctx": 8,
        "device": "cpu",
        "context_windows": 0,
    }
    values.update(overrides)
    return generate(GenerateOptions(**values))  # type: ignore[arg-type]


def graphs_by_identity(target: str) -> dict[str, Graph]:
    with LocalAttrDB(target, readonly=True) as db:
        graphs = {}
        for info in db.iter_prompts():
            graph = db.get_graph(info.id)
            assert graph is not None
            graphs[info.identity] = graph
        return graphs


def assert_same_builds(left: str, right: str) -> None:
    """Same prompt identities with equal graphs. Batching and thread counts change the order of
    float32 sums, so values agree to ~1e-5 relative (the compute tests hold the strict check),
    and small values that are sums of large terms (edges from `wte` and into `output` reach
    ~10) only to within ~1e-6 of the graph's largest value."""
    a, b = graphs_by_identity(left), graphs_by_identity(right)
    assert sorted(a) == sorted(b)
    for identity, graph in a.items():
        scale = float(np.abs(graph.edge_value).max(initial=1.0))
        assert graph.same_as(b[identity], rtol=1e-4, atol=1e-6 * scale), identity
    assert_same_corpus_tables(left, right)


def assert_consistent(target: str) -> None:
    """No index row without its prompt, every prompt with all its index rows, counters right."""
    with LocalAttrDB(target, readonly=True) as db, db.engine.connect() as connection:
        orphans = connection.execute(
            text(
                "SELECT count(*) FROM component_activations a "
                "LEFT JOIN prompts p ON p.id = a.prompt_id WHERE p.id IS NULL"
            )
        ).scalar_one()
        bare = connection.execute(
            text(
                "SELECT count(*) FROM prompts p WHERE p.n_components != "
                "(SELECT count(*) FROM component_activations a WHERE a.prompt_id = p.id)"
            )
        ).scalar_one()
        miscounted = connection.execute(
            text(
                "SELECT count(*) FROM components c WHERE c.prompt_count != "
                "(SELECT count(*) FROM component_activations a WHERE a.component_id = c.id)"
            )
        ).scalar_one()
        rows = connection.execute(
            text("SELECT prompt_id, component_id FROM component_activations")
        ).all()
        lists = connection.execute(text("SELECT prompt_id, component_ids FROM prompt_postings"))
        packed = {prompt_id: unpack(bytes(blob)).tolist() for prompt_id, blob in lists}
    assert (orphans, bare, miscounted) == (0, 0, 0)
    indexed: dict[int, list[int]] = {}
    for prompt_id, component_id in sorted(rows):
        indexed.setdefault(prompt_id, []).append(component_id)
    assert packed == indexed, "every prompt's component list is its index rows' components"
    if _holds_graphs(target):
        assert_corpus_tables_match_graphs(target)


def _holds_graphs(target: str) -> bool:
    with LocalAttrDB(target, readonly=True) as db:
        first = next(db.iter_prompts(page_size=1), None)
        return first is not None and first.has_graph


def corpus_oracle(target: str) -> tuple[PairTotals, StrongEdges]:
    """The corpus tables as their definition says, from the stored graphs, one edge at a time:
    each component-to-component edge value in whole attribution units, summed per pair; per
    prompt and pair the strongest edge (the first in stored order on ties) if it reaches the
    recorded floor."""
    totals: dict[tuple[str, str], list[int]] = {}
    strong: StrongEdges = {}
    with LocalAttrDB(target, readonly=True) as db:
        floor = db.edge_index_min_abs()
        layers = set(db.get_layers())
        for info in db.iter_prompts():
            graph = db.get_graph(info.id)
            assert graph is not None
            key = [
                f"{graph.layers[layer]}:{component}" if graph.layers[layer] in layers else None
                for layer, component in zip(
                    graph.node_layer.tolist(), graph.node_component.tolist(), strict=True
                )
            ]
            best: dict[tuple[str, str], tuple[float, int, int]] = {}
            seen: set[tuple[str, str]] = set()
            for s, t, v in zip(
                graph.edge_source.tolist(),
                graph.edge_target.tolist(),
                graph.edge_value.tolist(),
                strict=True,
            ):
                if key[s] is None or key[t] is None:
                    continue
                pair = (key[s], key[t])
                units = round(v / ATTRIBUTION_UNIT)
                entry = totals.setdefault(pair, [0, 0, 0])
                entry[0] += units
                entry[1] += abs(units)
                if pair not in seen:
                    seen.add(pair)
                    entry[2] += 1
                if pair not in best or abs(v) > abs(best[pair][0]):
                    best[pair] = (v, int(graph.node_pos[s]), int(graph.node_pos[t]))
            for pair, edge in best.items():
                if abs(edge[0]) >= floor:
                    strong[(info.identity, *pair)] = edge
    return {pair: (a, b, c) for pair, (a, b, c) in totals.items()}, strong


def stored_corpus_tables(target: str) -> tuple[PairTotals, StrongEdges]:
    """The corpus tables as stored, by keys and prompt identities."""
    with LocalAttrDB(target, readonly=True) as db, db.engine.connect() as connection:
        key_of = _component_keys(db)
        sums = corpus_deltas.all_sums(connection)
        totals = {
            (key_of[s], key_of[t]): (total, total_abs, count)
            for s, t, total, total_abs, count in zip(
                sums.source.tolist(),
                sums.target.tolist(),
                sums.total.tolist(),
                sums.total_abs.tolist(),
                sums.prompt_count.tolist(),
                strict=True,
            )
        }
        identity_of = {p.id: p.identity for p in db.iter_prompts()}
        strong = {
            (identity_of[p], key_of[s], key_of[t]): (value, sp, tp)
            for s, t, entries in edge_postings.all_entries(
                connection, corpus_deltas.pending(connection).strong
            )
            for p, value, sp, tp in zip(
                entries.prompt_ids.tolist(),
                entries.values.tolist(),
                entries.source_positions.tolist(),
                entries.target_positions.tolist(),
                strict=True,
            )
        }
    return totals, strong


def _component_keys(db: LocalAttrDB) -> dict[int, str]:
    return {
        slot.first_component_id + index: f"{name}:{index}"
        for name, slot in db.layer_slots().items()
        for index in range(slot.n_components)
    }


def assert_corpus_tables_match_graphs(target: str) -> None:
    """The corpus attributions and edge index hold exactly what the stored graphs give."""
    with LocalAttrDB(target, readonly=True) as db:
        assert "corpus_tables_stale" not in db.get_meta()
    totals, strong = stored_corpus_tables(target)
    expected_totals, expected_strong = corpus_oracle(target)
    assert totals == expected_totals
    assert strong.keys() == expected_strong.keys()
    for key, (value, sp, tp) in strong.items():
        assert (np.float32(value), sp, tp) == (np.float32(expected_strong[key][0]),) + tuple(
            expected_strong[key][1:]
        ), key


def assert_same_corpus_tables(left: str, right: str) -> None:
    """Two builds of the same prompts hold the same corpus tables, up to the float32 rounding by
    which their graphs may differ (`assert_same_builds`): the same pairs, prompt counts and
    indexed edges, totals to 1e-4 relative."""
    (a_totals, a_strong), (b_totals, b_strong) = (
        stored_corpus_tables(left),
        stored_corpus_tables(right),
    )
    assert a_totals.keys() == b_totals.keys()
    for pair, (total, total_abs, count) in a_totals.items():
        other = b_totals[pair]
        assert count == other[2], pair
        scale = max(total_abs, other[1], 1) * 1e-4 + 64
        assert abs(total - other[0]) <= scale and abs(total_abs - other[1]) <= scale, pair
    assert a_strong.keys() == b_strong.keys()
