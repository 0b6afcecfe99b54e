"""Corpus attributions (`/api/components/{key}/partners`) and the edge index
(`/api/search/edges`) on a demo database that `locattr-generate` builds, served over HTTP from
SQLite and from PostgreSQL, against oracles computed here with numpy from the stored graphs (not
from the tables that the queries read)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from numpy.typing import NDArray

from locattr import LocalAttrDB
from locattr.api.settings import Settings
from locattr.storage.edge_rows import ATTRIBUTION_UNIT, EDGE_INDEX_MIN_ABS
from locattr.storage.writes import CORPUS_TABLES_STALE_KEY
from tests.api.server import build_demo_db, running_server
from tests.api.test_corpus_queries import N_PROMPTS
from tests.conftest import BACKENDS, create_postgres_database, drop_postgres_database


def shared_demo(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo database of `test_corpus_queries` (same command), built once per test session
    for this module and the CLI's corpus-edge tests (a module's fixture is built anew for every
    module that imports it). Treat it as read-only: copy it to change it."""
    folder = tmp_path_factory.getbasetemp() / "corpus-edges-demo"
    path, built = folder / "demo.db", folder / "built"
    if not built.exists():
        shutil.rmtree(folder, ignore_errors=True)  # what a failed build left
        folder.mkdir()
        build_demo_db(path, N_PROMPTS, 32)
        built.touch()
    return str(path)


@dataclass(frozen=True)
class Edges:
    """Every component-to-component edge of every stored graph, one entry per edge (edges from
    `wte` or into `output` nodes have no component at one end and are left out)."""

    prompt: NDArray[np.int64]
    source: NDArray[np.int64]
    """Component ids in model order: layers as registered, then index."""
    target: NDArray[np.int64]
    value: NDArray[np.float32]
    source_position: NDArray[np.int64]
    target_position: NDArray[np.int64]
    keys: list[str]
    """Component id -> key."""
    n_prompts: int

    def id_of(self, key: str) -> int:
        return self.keys.index(key)


def edges_from_graphs(database: str) -> Edges:
    parts: list[tuple[NDArray[np.int64], ...]] = []
    values: list[NDArray[np.float32]] = []
    with LocalAttrDB(database, readonly=True) as db:
        slots = db.layer_slots()  # the `layers` table: each layer's first component id
        keys = [""] * sum(slot.n_components for slot in slots.values())
        for name, slot in slots.items():
            for index in range(slot.n_components):
                keys[slot.first_component_id + index] = f"{name}:{index}"
        prompt_ids = [info.id for info in db.iter_prompts()]
        for prompt_id in prompt_ids:
            graph = db.get_graph(prompt_id)
            assert graph is not None
            first = np.array(
                [slots[name].first_component_id if name in slots else -1 for name in graph.layers]
            )
            node_first = first[graph.node_layer]
            node_id = np.where(node_first >= 0, node_first + graph.node_component, -1)
            source, target = node_id[graph.edge_source], node_id[graph.edge_target]
            keep = (source >= 0) & (target >= 0)
            parts.append(
                (
                    np.full(int(keep.sum()), prompt_id),
                    source[keep],
                    target[keep],
                    graph.node_pos[graph.edge_source[keep]],
                    graph.node_pos[graph.edge_target[keep]],
                )
            )
            values.append(np.asarray(graph.edge_value[keep], dtype=np.float32))
    prompt, source, target, source_position, target_position = (
        np.concatenate([part[i] for part in parts]).astype(np.int64) for i in range(5)
    )
    return Edges(
        prompt=prompt,
        source=source,
        target=target,
        value=np.concatenate(values),
        source_position=source_position,
        target_position=target_position,
        keys=keys,
        n_prompts=len(prompt_ids),
    )


@dataclass(frozen=True)
class PartnerSums:
    total: float
    total_abs: float
    prompt_count: int
    n_edges: int


def oracle_partners(edges: Edges, key: str, direction: str) -> dict[str, PartnerSums]:
    """Partner key -> the sums over every stored graph of the edges between the two."""
    mine, other = (
        (edges.target, edges.source) if direction == "upstream" else (edges.source, edges.target)
    )
    chosen = mine == edges.id_of(key)
    others, value = other[chosen], edges.value[chosen].astype(np.float64)
    n = len(edges.keys)
    total = np.bincount(others, weights=value, minlength=n)
    total_abs = np.bincount(others, weights=np.abs(value), minlength=n)
    n_edges = np.bincount(others, minlength=n)
    pairs = np.unique(np.stack([others, edges.prompt[chosen]]), axis=1)
    prompts = np.bincount(pairs[0], minlength=n)
    return {
        edges.keys[i]: PartnerSums(
            float(total[i]), float(total_abs[i]), int(prompts[i]), int(n_edges[i])
        )
        for i in np.flatnonzero(n_edges).tolist()
    }


@dataclass(frozen=True)
class StrongestEdge:
    max_abs: np.float32
    edges: set[tuple[float, int, int]]
    """(value, source position, target position) of each edge reaching max_abs (ties)."""


def oracle_edge_hits(edges: Edges, source: str, target: str) -> dict[int, StrongestEdge]:
    """Prompt id -> the strongest edge from `source` to `target` in its graph (any |value|)."""
    chosen = np.flatnonzero(
        (edges.source == edges.id_of(source)) & (edges.target == edges.id_of(target))
    )
    hits: dict[int, StrongestEdge] = {}
    for prompt_id in np.unique(edges.prompt[chosen]).tolist():
        mine = chosen[edges.prompt[chosen] == prompt_id]
        magnitude = np.abs(edges.value[mine])
        best = mine[magnitude == magnitude.max()]
        hits[prompt_id] = StrongestEdge(
            magnitude.max(),
            {
                (
                    float(edges.value[j]),
                    int(edges.source_position[j]),
                    int(edges.target_position[j]),
                )
                for j in best.tolist()
            },
        )
    return hits


def indexed_counts(edges: Edges, floor: float) -> dict[tuple[int, int], int]:
    """(source id, target id) -> prompts where the pair's strongest edge reaches `floor`."""
    n = len(edges.keys)
    strong = np.abs(edges.value) >= np.float32(floor)
    triples = np.unique(
        np.stack([edges.source[strong], edges.target[strong], edges.prompt[strong]]), axis=1
    )
    codes, counts = np.unique(triples[0] * n + triples[1], return_counts=True)
    return {(int(c) // n, int(c) % n): int(k) for c, k in zip(codes, counts, strict=True)}


@pytest.fixture(scope="module")
def demo_sqlite(tmp_path_factory: pytest.TempPathFactory) -> str:
    return shared_demo(tmp_path_factory)


@pytest.fixture(scope="module")
def edges(demo_sqlite: str) -> Edges:
    return edges_from_graphs(demo_sqlite)


@pytest.fixture(scope="module", params=BACKENDS)
def client(request: pytest.FixtureRequest, demo_sqlite: str) -> Iterator[httpx.Client]:
    """The demo served from SQLite, or merged into PostgreSQL and served from there."""
    target, created = demo_sqlite, None
    if request.param == "postgres":
        target = created = create_postgres_database()
        with LocalAttrDB(created) as into, LocalAttrDB(demo_sqlite, readonly=True) as built:
            into.merge_from(built)
    try:
        with (
            running_server(Settings(db=target)) as url,
            httpx.Client(base_url=url, timeout=60) as http,
        ):
            yield http
    finally:
        if created is not None:
            drop_postgres_database(created)


def get_ok(client: httpx.Client, path: str, **params: object) -> dict[str, object]:
    response = client.get(path, params=params)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    return response.json()


def partner_picks(edges: Edges) -> dict[str, str]:
    """Components whose partner lists differ in kind: the most connected, a middling one, and
    one of the first layer (whose only sources are token embeddings: no upstream partner)."""
    degree = np.bincount(edges.target, minlength=len(edges.keys)) + np.bincount(
        edges.source, minlength=len(edges.keys)
    )
    connected = np.flatnonzero(degree)
    by_degree = connected[np.argsort(-degree[connected], kind="stable")]
    first = edges.keys[int(edges.source.min())]
    assert first.rsplit(":", 1)[0] == edges.keys[0].rsplit(":", 1)[0]
    return {
        "busiest": edges.keys[int(by_degree[0])],
        "middling": edges.keys[int(by_degree[len(by_degree) // 2])],
        "first layer": first,
    }


@pytest.mark.parametrize("pick", ["busiest", "middling", "first layer"])
@pytest.mark.parametrize("direction", ["upstream", "downstream"])
def test_partners_against_the_oracle(
    client: httpx.Client, edges: Edges, pick: str, direction: str
) -> None:
    key = partner_picks(edges)[pick]
    expected = oracle_partners(edges, key, direction)
    assert len(expected) <= 1000  # one page holds them all
    body = get_ok(client, f"/api/components/{key}/partners", direction=direction, limit=1000)
    assert (body["key"], body["direction"]) == (key, direction)
    assert (body["n_prompts"], body["n_partners"]) == (edges.n_prompts, len(expected))
    items = body["items"]
    assert isinstance(items, list)
    assert sorted(item["key"] for item in items) == sorted(expected)
    if pick == "first layer" and direction == "upstream":
        assert expected == {}  # its only sources are token embeddings, which are no component
    for item in items:
        oracle = expected[item["key"]]
        # Sums are whole units of ATTRIBUTION_UNIT: each edge is off by at most half a unit.
        tolerance = ATTRIBUTION_UNIT * oracle.n_edges + 1e-9
        assert item["total"] == pytest.approx(oracle.total, rel=0, abs=tolerance)
        assert item["total_abs"] == pytest.approx(oracle.total_abs, rel=0, abs=tolerance)
        assert item["prompt_count"] == oracle.prompt_count
    ranked = [(-item["total_abs"], edges.id_of(item["key"])) for item in items]
    assert ranked == sorted(ranked), "largest total |value| first, ties in model order"
    top = get_ok(client, f"/api/components/{key}/partners", direction=direction, limit=3)
    assert top["items"] == items[:3] and top["n_partners"] == body["n_partners"]


def test_partners_default_to_upstream_and_twenty(client: httpx.Client, edges: Edges) -> None:
    key = partner_picks(edges)["busiest"]
    body = get_ok(client, f"/api/components/{key}/partners")
    assert body["direction"] == "upstream"
    assert len(body["items"]) == min(20, len(oracle_partners(edges, key, "upstream")))  # type: ignore[arg-type]


def edge_pairs(edges: Edges) -> dict[str, tuple[str, str]]:
    """The pair indexed in the most prompts, and one indexed in a handful."""
    counts = indexed_counts(edges, EDGE_INDEX_MIN_ABS)
    busiest = max(counts, key=lambda pair: (counts[pair], pair))
    few = min(counts, key=lambda pair: (abs(counts[pair] - 4), pair))
    return {
        name: (edges.keys[pair[0]], edges.keys[pair[1]])
        for name, pair in (("busiest", busiest), ("few", few))
    }


def expected_ranking(hits: dict[int, StrongestEdge], min_abs: float) -> list[int]:
    kept = [p for p, hit in hits.items() if hit.max_abs >= np.float32(min_abs)]
    return sorted(kept, key=lambda p: (-hits[p].max_abs, p))


@pytest.mark.parametrize("pair", ["busiest", "few"])
def test_edge_search_against_the_oracle(
    client: httpx.Client, edges: Edges, demo_sqlite: str, pair: str
) -> None:
    source, target = edge_pairs(edges)[pair]
    hits = oracle_edge_hits(edges, source, target)
    expected = expected_ranking(hits, EDGE_INDEX_MIN_ABS)
    assert len(expected) >= (20 if pair == "busiest" else 2)
    body = get_ok(client, "/api/search/edges", source=source, target=target, limit=1000)
    assert (body["source"], body["target"], body["min_abs"]) == (source, target, EDGE_INDEX_MIN_ABS)
    results = body["results"]
    assert isinstance(results, list)
    assert body["total"] == len(expected) and body["next_cursor"] is None
    assert [r["id"] for r in results] == expected, "largest |value| first, ties by prompt id"
    with LocalAttrDB(demo_sqlite, readonly=True) as db:  # PostgreSQL got the same prompt ids
        tokens = {info.id: info.tokens for info in db.get_prompts(expected)}
    for result in results:
        hit = hits[result["id"]]
        assert np.float32(result["max_abs"]) == hit.max_abs
        assert result["max_abs"] == abs(result["value"])
        assert (
            result["value"],
            result["source_position"],
            result["target_position"],
        ) in hit.edges
        assert result["tokens"] == tokens[result["id"]]
        assert result["source_position"] <= result["target_position"] < len(result["tokens"])


def test_edge_search_pages_with_the_cursor(client: httpx.Client, edges: Edges) -> None:
    source, target = edge_pairs(edges)["busiest"]
    whole = get_ok(client, "/api/search/edges", source=source, target=target, limit=1000)
    seen: list[object] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, object] = {"source": source, "target": target, "limit": 7}
        if cursor is not None:
            params["cursor"] = cursor
        page = get_ok(client, "/api/search/edges", **params)
        assert page["total"] == whole["total"]
        results = page["results"]
        assert isinstance(results, list)
        seen += results
        pages += 1
        cursor = page["next_cursor"]  # type: ignore[assignment]
        if cursor is None:
            break
        assert len(results) == 7
    assert seen == whole["results"]
    assert pages == -(-len(seen) // 7)


def test_min_abs_keeps_the_prompts_whose_strongest_edge_reaches_it(
    client: httpx.Client, edges: Edges
) -> None:
    source, target = edge_pairs(edges)["busiest"]
    hits = oracle_edge_hits(edges, source, target)
    magnitudes = sorted(hit.max_abs for hit in hits.values() if hit.max_abs >= EDGE_INDEX_MIN_ABS)
    cut = float(magnitudes[len(magnitudes) // 2])  # a stored |value|: no rounding either way
    body = get_ok(client, "/api/search/edges", source=source, target=target, min_abs=cut)
    expected = expected_ranking(hits, cut)
    assert 0 < len(expected) < len(magnitudes)
    assert body["min_abs"] == cut and body["total"] == len(expected)
    assert [r["id"] for r in body["results"]] == expected[:50]  # type: ignore[union-attr]
    above = get_ok(
        client, "/api/search/edges", source=source, target=target, min_abs=float(magnitudes[-1]) * 2
    )
    assert (above["total"], above["results"], above["next_cursor"]) == (0, [], None)


def assert_refused(response: httpx.Response, status: int, code: str, *fragments: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code, body
    assert "\n" not in body["detail"] and body["detail"].strip(), body
    for fragment in fragments:
        assert fragment in body["detail"], body


BAD_PARTNERS = [
    ("x:abc", {}, 422, "malformed_component_key", "expected 'layer:index'"),
    ("h.0.mlp.c_fc:9999", {}, 404, "not_found", "no component h.0.mlp.c_fc:9999"),
    ("h.9.mlp.c_fc:1", {}, 404, "not_found", "no component h.9.mlp.c_fc:1"),
    ("h.0.mlp.c_fc:1", {"direction": "sideways"}, 422, "invalid_parameter", "direction"),
    ("h.0.mlp.c_fc:1", {"limit": 0}, 422, "invalid_parameter", "limit"),
    ("h.0.mlp.c_fc:1", {"limit": 1001}, 422, "invalid_parameter", "limit"),
]


@pytest.mark.parametrize(("key", "params", "status", "code", "fragment"), BAD_PARTNERS)
def test_bad_partner_requests_are_refused_in_one_sentence(
    client: httpx.Client, key: str, params: dict[str, object], status: int, code: str, fragment: str
) -> None:
    response = client.get(f"/api/components/{key}/partners", params=params)  # type: ignore[arg-type]
    assert_refused(response, status, code, fragment)


Q, F, D = "h.0.attn.q_proj:1", "h.0.mlp.c_fc:1", "h.1.mlp.down_proj:0"
BAD_EDGE_SEARCHES = [
    ({"source": "q_proj", "target": F}, 422, "malformed_component_key", "'q_proj'"),
    ({"source": Q, "target": "h.0.mlp.c_fc:x"}, 422, "malformed_component_key", "c_fc:x"),
    ({"source": "h.0.attn.q_proj:9999", "target": F}, 404, "not_found", "q_proj:9999"),
    ({"source": Q, "target": "h.7.mlp.c_fc:1"}, 404, "not_found", "h.7.mlp.c_fc:1"),
    ({"source": D, "target": F}, 422, "invalid_query", "does not come after"),
    ({"source": F, "target": "h.0.mlp.c_fc:2"}, 422, "invalid_query", "does not come after"),
    ({"source": Q, "target": F, "min_abs": -1}, 422, "invalid_parameter", "min_abs"),
    ({"source": Q, "target": F, "min_abs": "nan"}, 422, "invalid_parameter", "min_abs"),
    ({"source": Q, "target": F, "min_abs": "inf"}, 422, "invalid_parameter", "min_abs"),
    ({"source": Q, "target": F, "min_abs": "-inf"}, 422, "invalid_parameter", "min_abs"),
    ({"source": Q, "target": F, "min_abs": 0.1}, 422, "invalid_query", "floor 0.3"),
    ({"source": Q, "target": F, "limit": 0}, 422, "invalid_parameter", "limit"),
    ({"source": Q, "target": F, "limit": 1001}, 422, "invalid_parameter", "limit"),
    ({"source": Q, "target": F, "cursor": "zzz"}, 422, "invalid_cursor", "'zzz'"),
    ({"source": Q, "target": F, "cursor": "i_5"}, 422, "invalid_cursor", "'i_5'"),
    ({"source": Q, "target": F, "cursor": "e_0.5_1.5"}, 422, "invalid_cursor", "e_0.5_1.5"),
    ({"source": Q}, 422, "invalid_parameter", "target"),
]


@pytest.mark.parametrize(("params", "status", "code", "fragment"), BAD_EDGE_SEARCHES)
def test_bad_edge_searches_are_refused_in_one_sentence(
    client: httpx.Client, params: dict[str, object], status: int, code: str, fragment: str
) -> None:
    response = client.get("/api/search/edges", params=params)  # type: ignore[arg-type]
    assert_refused(response, status, code, fragment)


@pytest.fixture(scope="module")
def stale_url(demo_sqlite: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A copy of the demo marked as a database older than its corpus tables."""
    copy = tmp_path_factory.mktemp("stale") / "stale.db"
    shutil.copyfile(demo_sqlite, copy)
    with LocalAttrDB(copy) as db:
        db.set_meta({CORPUS_TABLES_STALE_KEY: "built before corpus attributions existed"})
    with running_server(Settings(db=str(copy))) as url:
        yield url


def test_a_stale_database_answers_409_naming_the_command(stale_url: str, edges: Edges) -> None:
    source, target = edge_pairs(edges)["busiest"]
    with httpx.Client(base_url=stale_url, timeout=60) as http:
        for response in (
            http.get(f"/api/components/{source}/partners"),
            http.get(f"/api/components/{target}/partners", params={"direction": "downstream"}),
            http.get("/api/search/edges", params={"source": source, "target": target}),
        ):
            assert_refused(
                response, 409, "corpus_tables_stale", "locattr db aggregate", "incomplete"
            )
        # What is wrong with the request itself is said first.
        assert http.get("/api/components/h.0.mlp.c_fc:9999/partners").status_code == 404
        malformed = http.get("/api/search/edges", params={"source": "x", "target": target})
        assert malformed.status_code == 422
