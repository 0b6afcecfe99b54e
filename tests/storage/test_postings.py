"""Packed postings answer every search exactly as the plain-SQL formulation does."""

import numpy as np
import pytest

from locattr import LocalAttrDB
from locattr.storage import queries
from locattr.storage.keys import ComponentKey
from locattr.storage.reads import LayerCache
from tests.graphs import LAYERS, random_record


def sql_oracle(
    db: LocalAttrDB, keys: list[str], *, require_all: bool, min_ci: float
) -> list[tuple[int, float]]:
    """Every matching prompt, best first, from the plain-SQL search."""
    with db.engine.connect() as connection:
        layers = LayerCache()
        found = [layers.component_id(connection, ComponentKey.parse(k)) for k in keys]
        ids = tuple(i for i in found if i is not None)
        assert len(ids) == len(keys)
        spec = queries.MatchSpec(ids, require_all=require_all, min_ci=min_ci)
        rows = connection.execute(queries.search_prompts(spec, limit=100_000, after=None)).all()
    return [(row[0], row[1]) for row in rows]


def paged(
    db: LocalAttrDB, keys: list[str], *, require_all: bool, min_ci: float, limit: int
) -> tuple[list[tuple[int, float]], set[int]]:
    hits, totals, cursor = [], set(), None
    while True:
        page = db.find_prompts_with_components(
            keys, require_all, limit=limit, cursor=cursor, min_ci=min_ci
        )
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
    for trial in range(12):
        keys = list(rng.choice(frequent, size=1 + trial % 3, replace=False))
        for require_all in (True, False):
            min_ci = [0.0, 0.3][trial % 2]
            expected = sql_oracle(db, keys, require_all=require_all, min_ci=min_ci)
            hits, totals = paged(db, keys, require_all=require_all, min_ci=min_ci, limit=7)
            assert [h[0] for h in hits] == [e[0] for e in expected], (keys, require_all, min_ci)
            assert [h[1] for h in hits] == pytest.approx([e[1] for e in expected])
            assert totals == {len(expected)}


def test_ties_are_broken_by_prompt_id_across_pages(db: LocalAttrDB) -> None:
    from tests.storage.test_db import fixed_record

    db.register_layers(LAYERS)
    db.add_prompts([fixed_record(f"p{i}", {"h.0.mlp.c_fc:1": [(0, 0.5)]}) for i in range(9)])
    db.build_postings()
    hits, totals = paged(db, ["h.0.mlp.c_fc:1"], require_all=True, min_ci=0.0, limit=4)
    assert [h[0] for h in hits] == list(range(1, 10)) and totals == {9}
