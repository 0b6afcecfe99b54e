"""`locattr db aggregate`, `locattr db upgrade` filling the corpus tables of an older database,
`locattr query edges` and `locattr query partners`, run as real processes on the demo database
(built once per session with the API's corpus-edge tests)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from alembic import command

from locattr import LocalAttrDB
from locattr.storage import PromptRecord, resolve_target
from locattr.storage.edge_rows import EDGE_INDEX_MIN_ABS
from locattr.storage.engine import create_sync_engine
from locattr.storage.schema import alembic_config
from tests.api.test_corpus_edges import (
    Edges,
    edge_pairs,
    edges_from_graphs,
    indexed_counts,
    partner_picks,
    shared_demo,
)
from tests.cli.test_query_cli import run
from tests.graphs import LAYERS, random_record
from tests.storage.test_schema import database_at_0002

Rows = list[tuple[int, ...]]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> str:
    return shared_demo(tmp_path_factory)


@pytest.fixture(scope="module")
def edges(demo: str) -> Edges:
    return edges_from_graphs(demo)


@pytest.fixture
def demo_copy(demo: str, tmp_path: Path) -> str:
    copy = tmp_path / "copy.db"
    shutil.copyfile(demo, copy)
    return str(copy)


def attribution_rows(path: str) -> Rows:
    with sqlite3.connect(path) as connection:
        return connection.execute(
            "SELECT source_id, target_id, total, total_abs, prompt_count FROM corpus_attributions "
            "ORDER BY source_id, target_id"
        ).fetchall()


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def summary(path: str, pairs: int, indexed: int, floor: float) -> str:
    return (
        f"{path}: corpus attributions of {pairs} component pairs from 80 prompts; edge index of "
        f"{indexed} edges with |value| >= {floor:g}"
    )


def test_aggregate_rebuilds_the_same_tables_then_moves_the_floor(
    demo_copy: str, edges: Edges
) -> None:
    before = attribution_rows(demo_copy)
    pair = edge_pairs(edges)["busiest"]
    with LocalAttrDB(demo_copy, readonly=True) as db:
        hits = db.find_prompts_with_edge(*pair, limit=1000).hits
    indexed = sum(indexed_counts(edges, EDGE_INDEX_MIN_ABS).values())
    rebuilt = run("db", "aggregate", "--db", demo_copy)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert flat(rebuilt.stdout) == summary(demo_copy, len(before), indexed, EDGE_INDEX_MIN_ABS)
    assert "80/80 prompts" in rebuilt.stderr  # the progress line
    assert attribution_rows(demo_copy) == before

    moved = run("db", "aggregate", "--db", demo_copy, "--edge-min-abs", "0.5")
    assert moved.returncode == 0, moved.stderr
    fewer = sum(indexed_counts(edges, 0.5).values())
    assert flat(moved.stdout) == summary(demo_copy, len(before), fewer, 0.5)
    assert attribution_rows(demo_copy) == before
    with LocalAttrDB(demo_copy, readonly=True) as db:
        assert db.edge_index_min_abs() == 0.5
        page = db.find_prompts_with_edge(*pair, limit=1000)
    assert page.min_abs == 0.5
    assert page.hits == [hit for hit in hits if hit.max_abs >= 0.5]


@pytest.mark.parametrize(
    ("floor", "message"),
    [("nan", "finite and >= 0, got nan"), ("-0.5", "finite and >= 0, got -0.5")],
)
def test_aggregate_refuses_a_bad_floor(demo_copy: str, floor: str, message: str) -> None:
    result = run("db", "aggregate", "--db", demo_copy, "--edge-min-abs", floor)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("locattr: error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr


def test_aggregate_refuses_an_index_only_database(tmp_path: Path) -> None:
    path = str(tmp_path / "bare.db")
    rng = np.random.default_rng(0)
    with LocalAttrDB(path) as db:
        db.register_layers(LAYERS)
        for _ in range(3):
            record = random_record(rng)
            db.add_prompt(
                PromptRecord(
                    record.identity, record.token_ids, record.tokens, record.graph, keep_graph=False
                )
            )
    result = run("db", "aggregate", "--db", path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "locattr: error: 3 prompts were stored without their graphs (--no-graphs), so their "
        "edges are gone: corpus attributions need a build that keeps graphs\n"
    )


def test_upgrading_a_0003_database_builds_its_corpus_tables(demo_copy: str, edges: Edges) -> None:
    expected = attribution_rows(demo_copy)
    target = resolve_target(demo_copy)
    engine = create_sync_engine(target)
    with engine.begin() as connection:  # back to revision 0003, data kept
        command.downgrade(alembic_config(target, connection), "0003_ci_sum_prompt_postings")
    engine.dispose()
    upgraded = run("db", "upgrade", "--db", demo_copy)
    assert upgraded.returncode == 0, upgraded.stderr
    indexed = sum(indexed_counts(edges, EDGE_INDEX_MIN_ABS).values())
    assert flat(upgraded.stdout).endswith(
        f"{demo_copy}: building the corpus attributions and edge index from the stored graphs "
        "(what `locattr db aggregate` does) "
        + summary(demo_copy, len(expected), indexed, EDGE_INDEX_MIN_ABS)
    )
    assert attribution_rows(demo_copy) == expected
    with LocalAttrDB(demo_copy, readonly=True) as db:
        assert "corpus_tables_stale" not in db.get_meta()
    again = run("db", "upgrade", "--db", demo_copy)
    assert again.returncode == 0 and "building" not in again.stdout


def test_upgrading_an_index_only_database_says_why_it_cannot_build_them(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    database_at_0002(path)  # one of its four prompts is stored without its graph
    upgraded = run("db", "upgrade", "--db", path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert (
        "corpus attributions and edge index not built: 1 prompt was stored without graphs "
        "(--no-graphs)" in flat(upgraded.stdout)
    )
    with LocalAttrDB(path, readonly=True) as db:
        key = db.list_components(limit=1)[0].key
    partners = run("query", "partners", key, "--db", path)
    assert partners.returncode == 2 and partners.stderr.count("\n") == 1
    assert "locattr db aggregate" in partners.stderr


def table_rows(stdout: str) -> list[list[str]]:
    """The body rows of a rich table whose first cell is filled (folded cells continue on
    lines whose first cell is blank)."""
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in stdout.splitlines()]
    return [row for row in rows if row and row[0]]


def test_query_edges_lists_the_prompts_strongest_first(demo: str, edges: Edges) -> None:
    source, target = edge_pairs(edges)["busiest"]
    with LocalAttrDB(demo, readonly=True) as db:
        first = db.find_prompts_with_edge(source, target, limit=5)
        second = db.find_prompts_with_edge(source, target, limit=5, cursor=first.next_cursor)
        strong = db.find_prompts_with_edge(source, target, min_abs=0.5, limit=1000)
    assert first.next_cursor is not None
    result = run("query", "edges", source, target, "--db", demo, "--limit", "5")
    assert result.returncode == 0, result.stderr
    assert f"{first.total} prompts where {source} -> {target} has |value| >= 0.3" in flat(
        result.stdout
    )
    assert table_rows(result.stdout) == [
        [
            str(hit.prompt_id),
            f"{hit.max_abs:.4f} ({hit.value:+.4f})",
            f"{hit.source_position}→{hit.target_position}",
            table_rows(result.stdout)[i][3],
        ]
        for i, hit in enumerate(first.hits)
    ]
    assert f"more: --cursor {first.next_cursor}" in result.stdout
    more = run(
        "query",
        "edges",
        source,
        target,
        "--db",
        demo,
        "--limit",
        "5",
        "--cursor",
        first.next_cursor,
    )
    assert [row[0] for row in table_rows(more.stdout)] == [
        str(hit.prompt_id) for hit in second.hits
    ]
    filtered = run("query", "edges", source, target, "--db", demo, "--min-abs", "0.5")
    assert f"{strong.total} prompts where" in flat(filtered.stdout)
    assert "|value| >= 0.5" in flat(filtered.stdout)


def test_query_partners_lists_the_strongest_partners(demo: str, edges: Edges) -> None:
    key = partner_picks(edges)["busiest"]
    for direction, verb in (("upstream", "send attribution to"), ("downstream", "receive")):
        with LocalAttrDB(demo, readonly=True) as db:
            found = db.get_partners(key, direction=direction, limit=5)  # type: ignore[arg-type]
        result = run(
            "query", "partners", key, "--db", demo, "--direction", direction, "--limit", "5"
        )
        assert result.returncode == 0, result.stderr
        assert f"{found.n_partners} components {verb}" in flat(result.stdout)
        assert table_rows(result.stdout) == [
            [p.key, f"{p.total:+.4f}", f"{p.total_abs:.4f}", str(p.prompt_count)]
            for p in found.partners
        ]
    default = run("query", "partners", key, "--db", demo)
    assert len(table_rows(default.stdout)) == 20 and "send attribution to" in default.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["edges", "h.1.mlp.down_proj:0", "h.1.mlp.c_fc:14"], "does not come after"),
        (["edges", "h.1.mlp.c_fc:14", "h.1.mlp.down_proj:0", "--min-abs", "0.1"], "floor 0.3"),
        (["edges", "h.1.mlp.c_fc:14", "h.1.mlp.down_proj:0", "--limit", "0"], "limit must be"),
        (["edges", "h.1.mlp.c_fc:14", "h.1.mlp.down_proj:0", "--cursor", "z"], "invalid cursor"),
        (["edges", "c_fc", "h.1.mlp.down_proj:0"], "expected 'layer:index'"),
        (["partners", "h.1.mlp.c_fc:999"], "no component h.1.mlp.c_fc:999"),
        (["partners", "h.1.mlp.c_fc:1", "--limit", "1001"], "limit must be"),
    ],
)
def test_bad_queries_exit_2_with_one_line(demo: str, args: list[str], message: str) -> None:
    result = run("query", *args, "--db", demo)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("locattr: error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr


def test_a_bad_direction_is_a_usage_error(demo: str) -> None:
    result = run("query", "partners", "h.1.mlp.c_fc:1", "--direction", "sideways", "--db", demo)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "'sideways' is not one of upstream, downstream" in result.stderr
