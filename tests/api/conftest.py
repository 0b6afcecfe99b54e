"""A served database with known contents, on SQLite (and on PostgreSQL where asked)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from locattr import LocalAttrDB
from locattr.api.settings import Settings
from locattr.graph import Graph
from locattr.storage import PromptRecord
from tests.api.server import running_server
from tests.graphs import THREE_EDGE_GRAPH

LAYERS = {"h.0.mlp.c_fc": 8, "h.0.mlp.down_proj": 8, "h.1.attn.o_proj": 4}
A, B, C = "h.0.mlp.c_fc:3", "h.0.mlp.down_proj:5", "h.1.attn.o_proj:1"


def fill(db: LocalAttrDB) -> None:
    """Three prompts: A and B fire in 1 and 2, C only in 3; prompt 1 has three edges."""
    db.register_layers(LAYERS)
    db.set_meta({"run": "test-run", "ci_threshold": 1e-6, "attr_threshold": 1e-4})
    first = THREE_EDGE_GRAPH
    second = Graph.from_records(
        [("h.0.mlp.c_fc", 2, 3, 0.25), ("h.0.mlp.down_proj", 0, 5, 0.25)], []
    )
    third = Graph.from_records([("h.1.attn.o_proj", 0, 1, 1.0)], [])
    db.add_prompts(
        [
            PromptRecord(
                "p1", [1, 2, 3], ["Once", " upon", " a"], first, {"dataset": "t", "index": 0}
            ),
            PromptRecord("p2", [4, 5, 6], ["The", " cat", " sat"], second),
            PromptRecord("p3", [7, 8], ["Hi", "!"], third),
        ]
    )
    db.set_activation_contexts(
        {A: {"mean_ci": 0.125, "examples": [{"tokens": ["Once"], "ci": [0.5]}]}}
    )


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = str(tmp_path_factory.mktemp("api") / "served.db")
    with LocalAttrDB(path) as db:
        fill(db)
    with running_server(Settings(db=path)) as url:
        yield url


@pytest.fixture
def client(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=30) as http:
        yield http
