"""Corpus attributions and the edge index: exact against an oracle over the stored graphs,
whatever the batching, merging or rebuilding, and the queries over them."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from alembic import command

from locattr import LocalAttrDB
from locattr.storage import (
    DatabaseError,
    PromptRecord,
    QueryError,
    corpus_deltas,
    resolve_target,
    writes,
)
from locattr.storage.corpus import StaleCorpusTablesError, UnknownComponentError
from locattr.storage.edge_rows import ATTRIBUTION_UNIT, EDGE_INDEX_MIN_ABS
from locattr.storage.engine import create_sync_engine
from locattr.storage.keys import ComponentKeyError
from locattr.storage.schema import alembic_config, upgrade
from tests.generate.builds import (
    assert_corpus_tables_match_graphs,
    corpus_oracle,
    stored_corpus_tables,
)
from tests.graphs import LAYERS, random_record


def records(seed: int, n: int) -> list[PromptRecord]:
    rng = np.random.default_rng(seed)
    return [random_record(rng, n_nodes=24, n_edges=80) for _ in range(n)]


def filled(
    target: str, prompts: list[PromptRecord], batch: int, *, pack_after: int | None = None
) -> str:
    """`prompts` written `batch` at a time; the edge index packed once `pack_after` are in."""
    with LocalAttrDB(target) as db:
        db.register_layers(LAYERS)
        for start in range(0, len(prompts), batch):
            db.add_prompts(prompts[start : start + batch])
            if pack_after is not None and start < pack_after <= start + batch:
                db.build_postings()
    return target


def unpacked_rows(target: str) -> int:
    """Edge index entries still in deltas, not yet folded into the postings."""
    with LocalAttrDB(target, readonly=True) as db, db.engine.connect() as connection:
        return len(corpus_deltas.pending(connection).strong)


def test_tables_hold_what_the_graphs_give_in_any_batching(db_url: str, tmp_path: Path) -> None:
    prompts = records(1, 24)
    filled(db_url, prompts, batch=5)
    assert_corpus_tables_match_graphs(db_url)
    totals, strong = stored_corpus_tables(db_url)
    assert len(strong) > 20 and len(totals) > 100  # the check above compared something
    one_by_one = filled(str(tmp_path / "one.db"), prompts[::-1], batch=1, pack_after=10)
    assert 0 < unpacked_rows(one_by_one) < len(strong)  # read from postings and rows alike
    assert stored_corpus_tables(one_by_one) == (totals, strong)  # integer sums: exactly
    with LocalAttrDB(db_url) as db:
        db.build_postings()
    assert unpacked_rows(db_url) == 0
    assert stored_corpus_tables(db_url) == (totals, strong)


def test_merged_shards_equal_one_build_and_known_prompts_count_once(
    db_url: str, tmp_path: Path
) -> None:
    prompts = records(2, 20)
    first = filled(str(tmp_path / "a.db"), prompts[:12], batch=4)
    second = filled(str(tmp_path / "b.db"), prompts[8:], batch=3)  # 4 prompts in both
    single = filled(str(tmp_path / "single.db"), prompts, batch=20)
    with LocalAttrDB(db_url) as merged, LocalAttrDB(first) as a, LocalAttrDB(second) as b:
        assert merged.merge_from(a) == 12
        assert merged.merge_from(b) == 8
        assert merged.merge_from(b) == 0
    assert stored_corpus_tables(db_url) == stored_corpus_tables(single)


def test_aggregate_rebuilds_the_same_tables_and_moves_the_floor(db_url: str) -> None:
    filled(db_url, records(3, 16), batch=4)
    before = stored_corpus_tables(db_url)
    with LocalAttrDB(db_url) as db:
        report = db.aggregate()
        assert (report.prompts, report.pairs, report.indexed_edges) == (
            16,
            len(before[0]),
            len(before[1]),
        )
    assert stored_corpus_tables(db_url) == before
    with LocalAttrDB(db_url) as db:
        db.aggregate(edge_min_abs=1.0)
        assert db.edge_index_min_abs() == 1.0
    totals, strong = stored_corpus_tables(db_url)
    assert totals == before[0] and 0 < len(strong) < len(before[1])
    assert (totals, strong) == corpus_oracle(db_url)
    with LocalAttrDB(db_url) as db:  # new prompts are indexed with the new floor
        db.add_prompts(records(4, 3))
    assert_corpus_tables_match_graphs(db_url)


def test_index_only_prompts_cannot_be_aggregated_and_merge_as_stale(
    db_url: str, tmp_path: Path
) -> None:
    bare = [
        PromptRecord(r.identity, r.token_ids, r.tokens, r.graph, keep_graph=False)
        for r in records(5, 4)
    ]
    index_only = filled(str(tmp_path / "bare.db"), bare, batch=2)
    assert stored_corpus_tables(index_only)[1]  # written at build time all the same
    with LocalAttrDB(index_only) as db, pytest.raises(DatabaseError, match="without their graphs"):
        db.aggregate()
    with LocalAttrDB(db_url) as merged, LocalAttrDB(index_only) as other:
        merged.merge_from(other)
        key = merged.list_components(limit=1)[0].key
        with pytest.raises(StaleCorpusTablesError, match="locattr db aggregate"):
            merged.get_partners(key)


def test_an_upgraded_database_is_stale_until_aggregated(db_url: str) -> None:
    prompts = records(6, 6)
    filled(db_url, prompts, batch=3)
    expected = stored_corpus_tables(db_url)
    target = resolve_target(db_url)
    engine = create_sync_engine(target)
    with engine.begin() as connection:  # back to revision 0003, data kept
        command.downgrade(alembic_config(target, connection), "0003_ci_sum_prompt_postings")
    engine.dispose()
    upgrade(target)
    with LocalAttrDB(db_url) as db:
        assert db.get_meta()["corpus_tables_stale"]
        key = db.list_components(limit=1)[0].key
        with pytest.raises(StaleCorpusTablesError):
            db.find_prompts_with_edge("h.0.attn.q_proj:1", "h.0.mlp.c_fc:1")
        db.aggregate()
        assert "corpus_tables_stale" not in db.get_meta()
        assert db.get_partners(key, direction="downstream").key == key
    assert stored_corpus_tables(db_url) == expected


def test_partners_are_the_largest_sums_in_each_direction(db_url: str) -> None:
    filled(db_url, records(7, 20), batch=5)
    totals, _ = corpus_oracle(db_url)
    with LocalAttrDB(db_url) as db:
        for key in [c.key for c in db.list_components(limit=6)]:
            for direction, mine, other in (("upstream", 1, 0), ("downstream", 0, 1)):
                mine_pairs = {p[other]: v for p, v in totals.items() if p[mine] == key}
                found = db.get_partners(key, direction=direction, limit=5)  # type: ignore[arg-type]
                assert found.n_partners == len(mine_pairs)
                expected = sorted(mine_pairs.items(), key=lambda kv: -kv[1][1])[:5]
                assert [p.total_abs for p in found.partners] == [
                    v[1] * ATTRIBUTION_UNIT for _, v in expected
                ]
                for partner in found.partners:
                    total, total_abs, count = mine_pairs[partner.key]
                    assert (partner.total, partner.total_abs, partner.prompt_count) == (
                        total * ATTRIBUTION_UNIT,
                        total_abs * ATTRIBUTION_UNIT,
                        count,
                    )


def test_edge_search_finds_the_prompts_the_graphs_say_strongest_first(db_url: str) -> None:
    filled(db_url, records(8, 30), batch=6, pack_after=12)
    _, strong = corpus_oracle(db_url)
    pairs: dict[tuple[str, str], list[tuple[float, str]]] = {}
    for (identity, source, target), (value, _, _) in strong.items():
        pairs.setdefault((source, target), []).append((abs(value), identity))
    (source, target), hits = max(pairs.items(), key=lambda kv: len(kv[1]))
    assert len(hits) >= 3
    with LocalAttrDB(db_url) as db:
        identity_of = {p.id: p.identity for p in db.iter_prompts()}
        pages, cursor = [], None
        while True:
            page = db.find_prompts_with_edge(source, target, limit=2, cursor=cursor)
            pages += page.hits
            cursor = page.next_cursor
            if cursor is None:
                break
        assert page.total == len(hits) and page.min_abs == EDGE_INDEX_MIN_ABS
        found = [(h.max_abs, identity_of[h.prompt_id]) for h in pages]
        assert [f[1] for f in found] == [
            h[1] for h in sorted(hits, key=lambda h: (-np.float32(h[0]), _id_of(identity_of, h[1])))
        ]
        for hit in pages:
            value, sp, tp = strong[(identity_of[hit.prompt_id], source, target)]
            assert (np.float32(hit.value), hit.source_position, hit.target_position) == (
                np.float32(value),
                sp,
                tp,
            )
        cut = float(np.median([h[0] for h in hits]))
        higher = db.find_prompts_with_edge(source, target, min_abs=cut, limit=100)
        assert {identity_of[h.prompt_id] for h in higher.hits} == {
            identity for magnitude, identity in hits if np.float32(magnitude) >= cut
        }


def _id_of(identity_of: dict[int, str], identity: str) -> int:
    return next(i for i, found in identity_of.items() if found == identity)


@pytest.mark.parametrize(
    ("source", "target", "min_abs", "error", "message"),
    [
        ("h.0.mlp.c_fc:1", "h.0.attn.q_proj:1", None, QueryError, "does not come after"),
        ("h.0.mlp.c_fc:1", "h.0.mlp.c_fc:2", None, QueryError, "does not come after"),
        ("h.0.attn.q_proj:1", "h.0.mlp.c_fc:1", 0.1, QueryError, "below the edge index's floor"),
        ("h.0.attn.q_proj:1", "h.0.mlp.c_fc:1", -1.0, QueryError, "finite number >= 0"),
        ("h.0.attn.q_proj:1", "h.0.mlp.c_fc:1", math.nan, QueryError, "finite number >= 0"),
        ("h.0.attn.q_proj:1", "h.0.mlp.c_fc:1", math.inf, QueryError, "finite number >= 0"),
        ("h.0.attn.q_proj:99", "h.0.mlp.c_fc:1", None, UnknownComponentError, "no component"),
        ("h.7.mlp.c_fc:1", "h.0.mlp.c_fc:1", None, UnknownComponentError, "no component"),
        ("q_proj", "h.0.mlp.c_fc:1", None, ComponentKeyError, "malformed component key"),
    ],
)
def test_edge_search_refuses_bad_input_in_one_sentence(
    tmp_path: Path,
    source: str,
    target: str,
    min_abs: float | None,
    error: type[Exception],
    message: str,
) -> None:
    target_db = filled(str(tmp_path / "t.db"), records(9, 2), batch=2)
    with LocalAttrDB(target_db) as db, pytest.raises(error, match=message):
        db.find_prompts_with_edge(source, target, min_abs=min_abs)


def test_the_floor_is_recorded_by_the_first_write(tmp_path: Path) -> None:
    target = filled(str(tmp_path / "t.db"), records(10, 1), batch=1)
    with LocalAttrDB(target) as db:
        assert db.get_meta()[writes.EDGE_INDEX_MIN_ABS_KEY] == EDGE_INDEX_MIN_ABS


def test_a_batch_with_no_edge_above_the_floor_folds(tmp_path: Path) -> None:
    target = str(tmp_path / "weak.db")
    weak = [
        PromptRecord(
            r.identity,
            r.token_ids,
            r.tokens,
            replace(r.graph, edge_value=r.graph.edge_value * 1e-3),
        )
        for r in records(11, 3)
    ]
    filled(target, weak, batch=3)
    with LocalAttrDB(target) as db:
        db.build_postings()
    totals, strong = stored_corpus_tables(target)
    assert totals and not strong
    assert (totals, strong) == corpus_oracle(target)
