"""Helpers for generate tests: read a built database back as {identity: graph}, check it whole."""

from __future__ import annotations

import numpy as np
from sqlalchemy import text

from locattr import LocalAttrDB
from locattr.graph import Graph


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
    assert (orphans, bare, miscounted) == (0, 0, 0)
