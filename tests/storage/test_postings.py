"""Packed postings answer every search exactly as the plain-SQL formulation does."""

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from locattr import LocalAttrDB
from locattr.storage import postings, postings_build, queries
from locattr.storage.keys import ComponentKey
from locattr.storage.reads import LayerCache
from tests.graphs import LAYERS, random_record


def sql_oracle(
    db: LocalAttrDB,
    keys: list[str],
    *,
    require_all: bool,
    min_ci: float,
    exclude: list[str],
    rank: queries.Rank,
) -> list[tuple[int, float]]:
    """Every matching prompt, best first, from the plain-SQL search (idf from plain counts)."""
    with db.engine.connect() as connection:
        layers = LayerCache()
        ids = [layers.component_id(connection, ComponentKey.parse(k)) for k in keys + exclude]
        assert None not in ids
        found = tuple(i for i in ids if i is not None)
        spec = queries.MatchSpec(
            found[: len(keys)], require_all, min_ci, excluded_ids=found[len(keys) :]
        )
        scoring = queries.Scoring.by_max_ci(len(keys))
        if rank == "specificity":
            n = connection.execute(text("SELECT count(*) FROM prompts")).scalar_one()
            weights = []
            for component_id in spec.component_ids:
                count = connection.execute(
                    text("SELECT count(*) FROM component_activations WHERE component_id = :c"),
                    {"c": component_id},
                ).scalar_one()
                weights.append(float(np.log1p(n / count)))
            scoring = queries.Scoring("specificity", tuple(weights))
        statement = queries.search_prompts(spec, scoring, limit=100_000, after=None)
        rows = connection.execute(statement).all()
    return [(row[0], row[1]) for row in rows]


def paged(
    db: LocalAttrDB, keys: list[str], *, limit: int, **options: Any
) -> tuple[list[tuple[int, float]], set[int]]:
    hits, totals, cursor = [], set(), None
    while True:
        page = db.find_prompts_with_components(keys, limit=limit, cursor=cursor, **options)
        hits += [(h.prompt_id, h.score) for h in page.hits]
        totals.add(page.total)
        if page.next_cursor is None:
            return hits, totals
        cursor = page.next_cursor


@pytest.mark.parametrize("stage", ["never built", "built", "built, then more prompts"])
def test_postings_match_sql(db: LocalAttrDB, stage: str) -> None:
    rng = np.random.default_rng(11)
    db.register_layers(LAYERS)
    db.add_prompts([random_record(rng, n_nodes=40) for _ in range(60)])
    if stage != "never built":
        assert db.build_postings() == 60
    if stage == "built, then more prompts":
        db.add_prompts([random_record(rng, n_nodes=40) for _ in range(25)])
    frequent = [c.key for c in db.list_components(limit=12)]
    for trial in range(16):
        chosen = list(rng.choice(frequent, size=1 + trial % 3 + trial % 2, replace=False))
        keys, exclude = chosen[: 1 + trial % 3], chosen[1 + trial % 3 :]
        for require_all in (True, False):
            options: dict[str, Any] = {
                "require_all": require_all,
                "min_ci": [0.0, 0.3][trial // 2 % 2],
                "exclude": exclude,
                "rank": queries.RANKS[trial // 4 % 2],
            }
            expected = sql_oracle(db, keys, **options)
            hits, totals = paged(db, keys, limit=7, **options)
            assert [h[0] for h in hits] == [e[0] for e in expected], (keys, options)
            assert [h[1] for h in hits] == pytest.approx([e[1] for e in expected])
            assert totals == {len(expected)}


def test_ties_are_broken_by_prompt_id_across_pages(db: LocalAttrDB) -> None:
    from tests.storage.test_db import fixed_record

    db.register_layers(LAYERS)
    db.add_prompts([fixed_record(f"p{i}", {"h.0.mlp.c_fc:1": [(0, 0.5)]}) for i in range(9)])
    db.build_postings()
    hits, totals = paged(db, ["h.0.mlp.c_fc:1"], limit=4)
    assert [h[0] for h in hits] == list(range(1, 10)) and totals == {9}


@pytest.mark.parametrize(
    "stage", ["never built", "built", "built, then more prompts", "counts stored, then more"]
)
def test_cofiring_counts_match_sql(
    db: LocalAttrDB, stage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Components firing in more than half of the prompts are counted from the others, those
    firing in many have their counts stored: every way, from packed lists, stored counts and
    index rows added since, agrees with a plain SQL join."""
    rng = np.random.default_rng(12)
    db.register_layers(LAYERS)
    db.add_prompts([random_record(rng, n_nodes=40) for _ in range(40)])
    if stage == "counts stored, then more":  # the demo's 40 prompts count as many here
        monkeypatch.setattr(postings_build, "FREQUENT_MIN_PROMPTS", 1)
        monkeypatch.setattr(postings_build, "FREQUENT_SHARE", 0.5)
    if stage != "never built":
        db.build_postings()
    if stage == "counts stored, then more":
        with db.engine.connect() as connection:
            stored = connection.execute(text("SELECT count(*) FROM cofiring_counts")).scalar()
        assert stored and stored < len(db.list_components(limit=1000))  # some, not all
    if stage.endswith("more prompts") or stage.endswith("then more"):
        db.add_prompts([random_record(rng, n_nodes=40) for _ in range(15)])
    n_prompts = db.get_prompt_count()
    components = db.list_components(limit=1000)
    shares = [c.prompt_count / n_prompts for c in components]
    assert min(shares) < 0.5 < max(shares)  # both ways of counting
    with db.engine.connect() as connection:
        pairs = connection.execute(
            text(
                "SELECT a.component_id, b.component_id, count(*) FROM component_activations a "
                "JOIN component_activations b ON a.prompt_id = b.prompt_id "
                "WHERE a.component_id != b.component_id GROUP BY a.component_id, b.component_id"
            )
        ).all()
    layers = LayerCache()
    with db.engine.connect() as connection:
        key_of = {i: layers.key_of(connection, i) for i in {p[0] for p in pairs}}
    expected: dict[str, dict[str, int]] = {}
    for a, b, count in pairs:
        expected.setdefault(key_of[a], {})[key_of[b]] = count
    for component in components:
        found = db.get_cofiring(component.key, limit=1000, min_count=1, order="count")
        assert found is not None and found.prompt_count == component.prompt_count
        assert {p.key: p.count for p in found.partners} == expected[component.key]
        assert found.n_partners == len(expected[component.key])
        counts = [p.count for p in found.partners]
        assert counts == sorted(counts, reverse=True)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(1, 300), max_size=200).map(lambda ids: sorted(set(ids))),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from(["specificity", "max_ci"]),
)
def test_counting_and_binary_search_intersect_alike(
    id_lists: list[list[int]], rank: queries.Rank
) -> None:
    """Both ways of intersecting postings (chosen by how much of the id range the shortest
    covers) find the same prompts with bit-identical scores."""
    rng = np.random.default_rng(len(id_lists))
    lists = [
        postings.Posting(
            np.array(ids, np.int64),
            rng.random(len(ids)).astype(np.float32).astype(np.float64),
            (rng.random(len(ids)) * 5).astype(np.float32).astype(np.float64),
        )
        for ids in id_lists
    ]
    weights = list(rng.random(len(lists)) * 3)
    top = max((ids[-1] for ids in id_lists if ids), default=0)
    expected = set(id_lists[0]).intersection(*id_lists[1:])
    found, scores = postings._intersect_by_search(lists, weights, rank)
    counted, counted_scores = postings._intersect_by_counting(lists, weights, rank, top)
    assert found.tolist() == counted.tolist() == sorted(expected)
    assert scores.tobytes() == counted_scores.tobytes()
