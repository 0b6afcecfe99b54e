"""LocalAttrDB on a real SQLite file and a real PostgreSQL database."""

import numpy as np
import pytest

from locattr import LocalAttrDB
from locattr.graph import Graph
from locattr.storage import (
    ComponentKeyError,
    CursorError,
    DatabaseError,
    PromptRecord,
    QueryError,
    reads,
)
from locattr.storage.index_rows import CI_UNIT, index_rows
from tests.graphs import LAYERS, random_record


def fixed_record(identity: str, fires: dict[str, list[tuple[int, float]]]) -> PromptRecord:
    """A prompt where each component key fires at the given (position, CI)s."""
    nodes = []
    for key, hits in fires.items():
        layer, index = key.rsplit(":", 1)
        nodes += [(layer, pos, int(index), ci) for pos, ci in hits]
    return PromptRecord(
        identity=identity,
        token_ids=list(range(8)),
        tokens=[f"w{i}" for i in range(8)],
        graph=Graph.from_records(nodes, []),
    )


@pytest.fixture
def layered(db: LocalAttrDB) -> LocalAttrDB:
    db.register_layers(LAYERS)
    return db


def test_prompt_graph_and_index_round_trip(layered: LocalAttrDB) -> None:
    rng = np.random.default_rng(1)
    records = [random_record(rng) for _ in range(5)]
    ids = layered.add_prompts(records)
    assert None not in ids and ids == sorted(i for i in ids if i is not None)
    assert layered.get_prompt_count() == 5
    for prompt_id, record in zip(ids, records, strict=True):
        assert prompt_id is not None
        info = layered.get_prompt(prompt_id)
        assert info is not None
        assert (info.identity, info.token_ids, info.tokens) == (
            record.identity,
            list(record.token_ids),
            list(record.tokens),
        )
        assert info.source == {"kind": "test"} and info.has_graph
        graph = layered.get_graph(prompt_id)
        assert graph is not None and graph.same_as(record.graph)
        # every firing component is findable, with its true max CI and positions
        rows = index_rows(record.graph)
        layer, comp = rows.layer[0], rows.component[0]
        key = f"{record.graph.layers[layer]}:{comp}"
        hit = next(
            h
            for h in layered.find_prompts_with_components([key], limit=50).hits
            if h.prompt_id == prompt_id
        )
        graph_nodes = (record.graph.node_layer == layer) & (record.graph.node_component == comp)
        true_max = float(record.graph.node_ci[graph_nodes].max())
        # the index holds CI at a step of CI_UNIT (plus float32 rounding of the node CI)
        assert abs(hit.matches[key].max_ci - true_max) <= CI_UNIT / 2 + 1e-7 * true_max
        assert (
            hit.matches[key].positions == rows.positions[rows.offsets[0] : rows.offsets[1]].tolist()
        )
    assert [p.id for p in layered.iter_prompts(page_size=2)] == ids
    assert layered.get_prompt(10_000) is None and layered.get_graph(10_000) is None


def test_readding_an_identity_is_a_no_op(layered: LocalAttrDB) -> None:
    rng = np.random.default_rng(2)
    record = random_record(rng)
    first = layered.add_prompt(record)
    key = layered.get_unique_components()[0]
    stats_before = layered.get_component_stats(key)
    assert layered.add_prompt(record) is None
    assert layered.add_prompts([record, random_record(rng), record])[::2] == [None, None]
    assert layered.get_prompt_count() == 2
    assert layered.get_prompt(first or 0) is not None
    stats_after = layered.get_component_stats(key)
    assert stats_before is not None and stats_after is not None
    assert stats_after.prompt_count - stats_before.prompt_count <= 1  # only the one new prompt


def test_index_only_prompts_have_no_graph(layered: LocalAttrDB) -> None:
    record = random_record(np.random.default_rng(3))
    prompt_id = layered.add_prompt(
        PromptRecord(
            record.identity, record.token_ids, record.tokens, record.graph, keep_graph=False
        )
    )
    assert prompt_id is not None
    assert layered.get_graph(prompt_id) is None
    info = layered.get_prompt(prompt_id)
    assert info is not None and not info.has_graph and info.n_edges == 0
    assert layered.find_prompts_with_components(layered.get_unique_components()[:1]).total == 1


def test_search_all_any_ranking_by_max_ci_and_pagination(layered: LocalAttrDB) -> None:
    a, b, c = "h.0.attn.q_proj:1", "h.0.mlp.c_fc:2", "h.1.mlp.down_proj:3"
    layered.add_prompts(
        [
            fixed_record("p1", {a: [(0, 0.5)], b: [(1, 0.5)]}),  # a+b, score 1.0
            fixed_record("p2", {a: [(0, 0.9), (3, 0.2)], b: [(2, 0.8)], c: [(4, 0.1)]}),  # 1.7
            fixed_record("p3", {a: [(5, 0.3)]}),
            fixed_record("p4", {b: [(0, 0.25)], a: [(1, 0.75)]}),  # a+b, score 1.0 (tie with p1)
        ]
    )
    page = layered.find_prompts_with_components([a, b], rank="max_ci")
    assert page.prompt_ids == [2, 1, 4] and page.total == 3 and page.next_cursor is None
    assert page.hits[0].score == pytest.approx(1.7)
    assert page.hits[0].matches[a].positions == [0, 3]
    assert page.hits[0].matches[a].max_ci == pytest.approx(0.9)

    assert layered.find_prompts_with_components([a, b, c], rank="max_ci").prompt_ids == [2]
    anywhere = layered.find_prompts_with_components([a, c], require_all=False, rank="max_ci")
    assert anywhere.prompt_ids == [2, 4, 1, 3] and anywhere.total == 4
    # a duplicated key is the same query (the original matched nothing)
    assert layered.find_prompts_with_components([a, a, b], rank="max_ci").prompt_ids == [2, 1, 4]

    pages, cursor = [], None
    while True:
        page = layered.find_prompts_with_components([a], limit=1, cursor=cursor, rank="max_ci")
        pages += page.prompt_ids
        assert page.total == 4
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == [2, 4, 1, 3]


def test_search_min_ci_and_same_position_by_max_ci(layered: LocalAttrDB) -> None:
    a, b = "h.0.attn.q_proj:1", "h.0.mlp.c_fc:2"
    layered.add_prompts(
        [
            fixed_record("p1", {a: [(0, 0.5), (2, 0.25)], b: [(2, 0.75)]}),  # share position 2
            fixed_record("p2", {a: [(0, 0.125)], b: [(1, 0.875)]}),  # no common position
            fixed_record("p3", {a: [(3, 0.75)], b: [(3, 0.5)]}),  # share position 3
        ]
    )
    assert layered.find_prompts_with_components([a, b], rank="max_ci").prompt_ids == [1, 3, 2]
    strong = layered.find_prompts_with_components([a, b], min_ci=0.5, rank="max_ci")
    assert strong.prompt_ids == [1, 3] and strong.total == 2
    together = layered.find_prompts_with_components([a, b], same_position=True, rank="max_ci")
    assert together.prompt_ids == [1, 3] and together.total == 2
    assert together.hits[0].matches[b].positions == [2]
    first = layered.find_prompts_with_components([a, b], same_position=True, limit=1, rank="max_ci")
    assert first.prompt_ids == [1] and first.next_cursor is not None
    rest = layered.find_prompts_with_components(
        [a, b], same_position=True, limit=1, cursor=first.next_cursor, rank="max_ci"
    )
    assert rest.prompt_ids == [3] and rest.next_cursor is None and rest.total == 2
    with pytest.raises(QueryError, match="same_position"):
        layered.find_prompts_with_components(
            [a, b], require_all=False, same_position=True, rank="max_ci"
        )
    with pytest.raises(QueryError, match="min_ci must be a finite number"):
        layered.find_prompts_with_components([a, b], min_ci=float("nan"), rank="max_ci")


def test_search_by_specificity(layered: LocalAttrDB) -> None:
    """score = sum over the present components of CI sum x ln(1 + N / n), by hand."""
    a, b, c = "h.0.attn.q_proj:1", "h.0.mlp.c_fc:2", "h.1.mlp.down_proj:3"
    layered.add_prompts(
        [
            fixed_record("p1", {a: [(0, 1.0)], b: [(1, 0.5)]}),
            fixed_record("p2", {a: [(0, 1.0), (3, 1.0)], b: [(2, 0.5)], c: [(4, 0.1)]}),
            fixed_record("p3", {a: [(5, 0.25)]}),
            fixed_record("p4", {b: [(1, 0.25), (6, 0.5)], a: [(1, 1.0)]}),
        ]
    )
    idf_a, idf_b, idf_c = np.log1p(4 / 4), np.log1p(4 / 3), np.log1p(4 / 1)
    page = layered.find_prompts_with_components([a, b])
    assert page.rank == "specificity"
    assert page.idf == pytest.approx({a: idf_a, b: idf_b})
    expected = {1: idf_a + 0.5 * idf_b, 2: 2 * idf_a + 0.5 * idf_b, 4: idf_a + 0.75 * idf_b}
    assert page.prompt_ids == [2, 4, 1]  # max_ci ties p1, p2 and p4 (1.5) but for their ids
    assert {h.prompt_id: h.score for h in page.hits} == pytest.approx(expected)
    assert page.hits[0].matches[a].ci_sum == pytest.approx(2.0)
    by_max_ci = layered.find_prompts_with_components([a, b], rank="max_ci")
    assert [h.score for h in by_max_ci.hits] == pytest.approx([1.5, 1.5, 1.5])
    assert by_max_ci.rank == "max_ci" and by_max_ci.idf == {}

    anywhere = layered.find_prompts_with_components([a, c], require_all=False)
    assert anywhere.prompt_ids == [2, 1, 4, 3]
    assert anywhere.hits[0].score == pytest.approx(2 * idf_a + 0.1 * idf_c)
    assert anywhere.hits[-1].score == pytest.approx(0.25 * idf_a)

    first = layered.find_prompts_with_components([a, b], limit=2)
    assert first.next_cursor is not None
    rest = layered.find_prompts_with_components([a, b], limit=2, cursor=first.next_cursor)
    assert rest.prompt_ids == [1] and rest.next_cursor is None
    with pytest.raises(CursorError, match="next_cursor"):  # a cursor continues its own ranking
        layered.find_prompts_with_components([a, b], cursor=first.next_cursor, rank="max_ci")
    together = layered.find_prompts_with_components([a, b], same_position=True)
    assert together.prompt_ids == [4] and together.hits[0].score == pytest.approx(expected[4])
    with pytest.raises(QueryError, match="rank must be one of specificity, max_ci"):
        layered.find_prompts_with_components([a], rank="sum")  # type: ignore[arg-type]


def test_search_exclusion(layered: LocalAttrDB) -> None:
    a, b, c = "h.0.attn.q_proj:1", "h.0.mlp.c_fc:2", "h.1.mlp.down_proj:3"
    layered.add_prompts(
        [
            fixed_record("p1", {a: [(0, 0.5)], b: [(1, 0.5)]}),
            fixed_record("p2", {a: [(0, 0.9)], b: [(0, 0.8)], c: [(4, 0.1)]}),  # a, b at 0
            fixed_record("p3", {a: [(5, 0.3)]}),
            fixed_record("p4", {b: [(0, 0.25)], a: [(1, 0.75)], c: [(2, 0.75)]}),
        ]
    )

    def ids(keys: list[str], **options: object) -> list[int]:
        page = layered.find_prompts_with_components(keys, limit=2, **options)  # type: ignore[arg-type]
        found, cursor = list(page.prompt_ids), page.next_cursor
        while cursor is not None:
            more = layered.find_prompts_with_components(keys, limit=2, cursor=cursor, **options)  # type: ignore[arg-type]
            found, cursor = found + more.prompt_ids, more.next_cursor
            assert more.total == page.total
        assert page.total == len(found)
        return sorted(found)

    assert ids([a], exclude=[c]) == [1, 3]
    assert ids([a], exclude=[c, b]) == [3]
    assert ids([a, b], exclude=[c]) == [1]
    assert ids([b, c], require_all=False, exclude=[a]) == []
    # min_ci holds for excluded components too: c at 0.1 in p2 does not fire at 0.5
    assert ids([a], exclude=[c], min_ci=0.5) == [1, 2]
    assert ids([a], exclude=[c], rank="max_ci") == [1, 3]
    assert ids([a, b], same_position=True) == [2]
    assert ids([a, b], exclude=[c], same_position=True) == []
    assert ids([a, b], exclude=[c], same_position=True, min_ci=0.5) == [2]
    page = layered.find_prompts_with_components([a], exclude=[c, "nope:1", "h.0.mlp.c_fc:999"])
    assert sorted(page.prompt_ids) == [1, 3] and page.unknown_keys == ["nope:1", "h.0.mlp.c_fc:999"]
    page = layered.find_prompts_with_components([a, "nope:2"], exclude=["nope:1"])
    assert page.prompt_ids == [] and page.unknown_keys == ["nope:2", "nope:1"]
    with pytest.raises(QueryError, match=r"h\.0\.attn\.q_proj:1 is both searched for and excluded"):
        layered.find_prompts_with_components([a, b], exclude=[c, " h.0.attn.q_proj:01"])
    with pytest.raises(ComponentKeyError, match="layer:index"):
        layered.find_prompts_with_components([a], exclude=["x:abc"])


def test_search_bad_input(layered: LocalAttrDB) -> None:
    layered.add_prompt(fixed_record("p1", {"h.0.mlp.c_fc:2": [(0, 0.5)]}))
    for bad in ["h.0.attn.q_proj", "x:abc", ":3"]:
        with pytest.raises(ComponentKeyError, match="layer:index"):
            layered.find_prompts_with_components([bad])
    page = layered.find_prompts_with_components(["h.0.mlp.c_fc:2", "nope:1", "h.0.mlp.c_fc:999"])
    assert page.hits == [] and page.unknown_keys == ["nope:1", "h.0.mlp.c_fc:999"]
    page = layered.find_prompts_with_components(["h.0.mlp.c_fc:2", "nope:1"], require_all=False)
    assert page.prompt_ids == [1] and page.unknown_keys == ["nope:1"]
    with pytest.raises(CursorError, match="next_cursor"):
        layered.find_prompts_with_components(["h.0.mlp.c_fc:2"], cursor="garbage!")
    with pytest.raises(QueryError, match="limit"):
        layered.find_prompts_with_components(["h.0.mlp.c_fc:2"], limit=0)
    with pytest.raises(QueryError, match="at least one"):
        layered.find_prompts_with_components([])


def test_component_stats_and_listing(layered: LocalAttrDB) -> None:
    key = "h.0.mlp.c_fc:2"
    layered.add_prompts(
        [
            fixed_record("p1", {key: [(0, 0.5), (2, 0.25)]}),
            fixed_record("p2", {key: [(1, 0.75)], "h.1.mlp.down_proj:0": [(1, 0.5)]}),
            fixed_record("p3", {"h.1.mlp.down_proj:0": [(1, 0.5)]}),
            fixed_record("p4", {"h.1.mlp.down_proj:0": [(1, 0.5)]}),
        ]
    )
    stats = layered.get_component_stats(key)
    assert stats is not None
    assert (stats.prompt_count, stats.top_prompt_ids) == (2, [2, 1])
    assert stats.mean_max_ci == pytest.approx(0.625) and stats.max_max_ci == pytest.approx(0.75)
    quiet = layered.get_component_stats("h.0.mlp.c_fc:3")
    assert quiet is not None and quiet.prompt_count == 0 and quiet.top_prompt_ids == []
    assert layered.get_component_stats("h.9.mlp:1") is None
    assert layered.get_unique_components() == [key, "h.1.mlp.down_proj:0"]
    listed = layered.list_components()
    assert [(c.key, c.prompt_count) for c in listed] == [("h.1.mlp.down_proj:0", 3), (key, 2)]
    assert [c.key for c in layered.list_components(layer="h.0.mlp.c_fc")] == [key]


def test_meta_and_activation_contexts(layered: LocalAttrDB) -> None:
    layered.set_meta({"run": "wandb:a/b/runs/c", "ci_threshold": 1e-6})
    layered.set_meta({"seed": 42})
    assert layered.get_meta() == {"run": "wandb:a/b/runs/c", "ci_threshold": 1e-6, "seed": 42}
    context = {"mean_ci": 0.125, "examples": [{"tokens": ["a", "b"], "ci": [0.5, 0.0]}]}
    layered.set_activation_contexts({"h.0.mlp.c_fc:2": context})
    assert layered.get_activation_contexts() == {"h.0.mlp.c_fc:2": context}
    assert layered.get_activation_context("h.0.mlp.c_fc:2") == context
    assert layered.get_activation_context("h.0.mlp.c_fc:3") is None
    stats = layered.get_component_stats("h.0.mlp.c_fc:2")
    assert stats is not None and stats.mean_ci == 0.125
    with pytest.raises(DatabaseError, match="no component"):
        layered.set_activation_contexts({"nope:1": context})


def test_layers_of_another_run_are_refused(layered: LocalAttrDB) -> None:
    layered.register_layers(LAYERS)  # the same layers again: fine
    assert layered.get_layers() == LAYERS
    with pytest.raises(DatabaseError, match="another SPD run"):
        layered.register_layers({"h.0.mlp.c_fc": 99})
    record = fixed_record("p", {"h.7.mlp.c_fc:1": [(0, 0.5)]})
    with pytest.raises(DatabaseError, match="unregistered layers"):
        layered.add_prompt(record)
    with pytest.raises(DatabaseError, match="beyond"):
        layered.add_prompt(fixed_record("q", {"h.0.mlp.c_fc:24": [(0, 0.5)]}))
    assert layered.get_prompt_count() == 0


def test_a_failing_batch_writes_nothing(layered: LocalAttrDB) -> None:
    good = fixed_record("good", {"h.0.mlp.c_fc:1": [(0, 0.5)]})
    bad = fixed_record("bad", {"h.0.mlp.c_fc:999": [(0, 0.5)]})
    with pytest.raises(DatabaseError):
        layered.add_prompts([good, bad])
    assert layered.get_prompt_count() == 0
    assert layered.get_unique_components() == []


def test_readonly_database_refuses_writes(db_url: str) -> None:
    with LocalAttrDB(db_url) as writer:
        writer.register_layers(LAYERS)
        writer.add_prompt(fixed_record("p", {"h.0.mlp.c_fc:1": [(0, 0.5)]}))
    with LocalAttrDB(db_url, readonly=True) as reader:
        assert reader.get_prompt_count() == 1
        with pytest.raises(DatabaseError, match="read-only"):
            reader.add_prompt(fixed_record("q", {"h.0.mlp.c_fc:1": [(0, 0.5)]}))
        with (
            pytest.raises(Exception, match="(?i)read.?only"),
            reader.engine.begin() as connection,
        ):
            connection.exec_driver_sql("DELETE FROM prompts")
    with LocalAttrDB(db_url, readonly=True) as reader:
        assert reader.get_prompt_count() == 1


@pytest.mark.parametrize("n_components", [3, 25_000])  # an IN list, and an id range
def test_component_mean_ci_of_a_graph(db: LocalAttrDB, n_components: int) -> None:
    db.register_layers({"h.0.mlp.c_fc": 30_000, "h.1.mlp.c_fc": 8})
    db.set_activation_contexts(
        {
            "h.0.mlp.c_fc:1": {"mean_ci": 0.25},
            "h.0.mlp.c_fc:29999": {"mean_ci": 0.5},  # inside the id range, not in the graph
            "h.1.mlp.c_fc:2": {"mean_ci": 0.125},
        }
    )
    components = np.arange(n_components)
    graph = Graph(
        layers=("wte", "h.1.mlp.c_fc", "h.0.mlp.c_fc"),  # not in the database's layer order
        node_layer=np.concatenate([[0, 1, 1], np.full(n_components, 2)]),
        node_pos=np.concatenate([[0, 0, 1], components % 32]),
        node_component=np.concatenate([[2, 2, 2], components]),
        node_ci=np.ones(n_components + 3),
        edge_source=np.zeros(0),
        edge_target=np.zeros(0),
        edge_value=np.zeros(0),
    )
    fired = Graph.from_records(
        [
            ("h.0.mlp.c_fc", 0, 1, 0.5),
            ("h.0.mlp.c_fc", 0, 29_999, 0.5),
            ("h.0.mlp.c_fc", 1, 7, 0.5),
        ],
        [],
    )
    db.add_prompt(PromptRecord("fired", [1, 2], ["a", "b"], fired))
    with db.engine.connect() as connection:
        found = reads.component_mean_ci(connection, reads.LayerCache(), graph)
        stats = reads.graph_component_stats(connection, reads.LayerCache(), graph)
    assert found == stats.mean_ci == {"h.0.mlp.c_fc:1": 0.25, "h.1.mlp.c_fc:2": 0.125}
    # prompt counts of the graph's components that fire somewhere (29999 is not in the graph)
    expected = {"h.0.mlp.c_fc:1": 1} | ({"h.0.mlp.c_fc:7": 1} if n_components > 7 else {})
    assert stats.prompt_count == expected
