"""Migrations and opening databases that are not (yet, or no longer) what we expect."""

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import insert, inspect, text

from locattr import LocalAttrDB
from locattr.storage import (
    DatabaseError,
    PromptRecord,
    ValueDtype,
    resolve_target,
    writes,
)
from locattr.storage.component_lists import unpack
from locattr.storage.context_blobs import ContextDecoder
from locattr.storage.edge_rows import EDGE_INDEX_MIN_ABS
from locattr.storage.engine import create_sync_engine
from locattr.storage.index_rows import CI_UNIT, from_ci_units
from locattr.storage.models import SCHEMA_REVISION, prompts_table
from locattr.storage.schema import alembic_config, upgrade
from locattr.storage.writes import PreparedPrompt
from tests.graphs import LAYERS, random_record


def test_models_name_the_alembic_head() -> None:
    config = alembic_config(resolve_target("/tmp/unused.db"))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION


def test_upgrade_head_then_check_finds_no_difference(db_url: str) -> None:
    target = resolve_target(db_url)
    assert upgrade(target) == SCHEMA_REVISION
    engine = create_sync_engine(target)
    try:
        with engine.begin() as connection:
            command.check(alembic_config(target, connection))  # raises on any model/db drift
    finally:
        engine.dispose()
    with LocalAttrDB(db_url, readonly=True) as db:
        assert db.get_prompt_count() == 0


def test_other_revision_names_the_command_that_fixes_it(db_url: str) -> None:
    LocalAttrDB(db_url).close()
    engine = create_sync_engine(resolve_target(db_url))
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0000_older'"))
    engine.dispose()
    for readonly in (False, True):
        with pytest.raises(DatabaseError, match="locattr db upgrade --db"):
            LocalAttrDB(db_url, readonly=readonly)


def test_an_older_database_upgrades_in_place(db_url: str) -> None:
    target = resolve_target(db_url)
    engine = create_sync_engine(target)
    with engine.begin() as connection:
        command.upgrade(alembic_config(target, connection), "0001_initial")
    engine.dispose()
    with pytest.raises(DatabaseError, match="0001_initial.*locattr db upgrade"):
        LocalAttrDB(db_url)
    assert upgrade(target) == SCHEMA_REVISION
    with LocalAttrDB(db_url) as db:
        db.register_layers({"h.0.mlp.c_fc": 2})
        assert db.build_postings() == 0


def test_missing_file_read_only(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match=r"no database at .*missing\.db.*locattr-generate"):
        LocalAttrDB(tmp_path / "missing.db", readonly=True)
    with pytest.raises(DatabaseError, match="does not exist"):
        LocalAttrDB(tmp_path / "no-such-dir" / "x.db")


@pytest.mark.parametrize("readonly", [False, True])
def test_garbage_file_is_named_in_the_error(tmp_path: Path, readonly: bool) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"this is not sqlite" * 500)
    with pytest.raises(DatabaseError, match=r"notes\.db"):
        LocalAttrDB(path, readonly=readonly)
    assert path.read_bytes() == b"this is not sqlite" * 500


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE cats (name TEXT)")
    with pytest.raises(DatabaseError, match=r"other\.db is not a locattr database"):
        LocalAttrDB(path)


def test_truncated_database_is_named_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.db"
    LocalAttrDB(path).close()
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DatabaseError, match=r"cut\.db"):
        LocalAttrDB(path, readonly=True).get_prompt_count()


def test_sqlite_pragmas_are_set_on_every_connection(tmp_path: Path) -> None:
    with LocalAttrDB(tmp_path / "p.db") as db, db.engine.connect() as connection:
        pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("foreign_keys") == 1
        assert pragma("synchronous") == 1  # NORMAL
        assert int(pragma("busy_timeout") or 0) >= 60_000


def test_unsupported_urls_say_what_is_accepted() -> None:
    with pytest.raises(DatabaseError, match="postgresql://"):
        resolve_target("mysql://u@h/db")
    with pytest.raises(DatabaseError, match="LOCATTR_DB"):
        resolve_target("  ")


def test_plain_alembic_uses_locattr_db(tmp_path: Path) -> None:
    """`alembic upgrade head` from the repo root works on LOCATTR_DB, as alembic.ini says."""
    path = tmp_path / "plain.db"
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=root,
        env={"LOCATTR_DB": str(path), "PATH": ""},
        check=True,
        capture_output=True,
    )
    with LocalAttrDB(path, readonly=True) as db:
        assert db.get_prompt_count() == 0


def database_at_0002(db_url: str) -> list[PreparedPrompt]:
    """A database written as revision 0002 wrote it (index rows without CI sums): three prompts
    with graphs and one index-only prompt. Returns the prompts as this locattr prepares them."""
    target = resolve_target(db_url)
    engine = create_sync_engine(target)
    rng = np.random.default_rng(5)
    records = [random_record(rng, n_nodes=30) for _ in range(4)]
    last = records[-1]
    records[-1] = PromptRecord(
        last.identity, last.token_ids, last.tokens, last.graph, keep_graph=False
    )
    with engine.begin() as connection:
        command.upgrade(alembic_config(target, connection), "0002_component_postings")
        slots = writes.register_layers(connection, LAYERS)
        prepared = [
            writes.prepare_prompt(r, slots, ValueDtype.FLOAT32, EDGE_INDEX_MIN_ABS) for r in records
        ]
        for prompt_id, prompt in enumerate(prepared, start=1):
            connection.execute(insert(prompts_table), [{"id": prompt_id, **prompt.row}])
            connection.execute(
                text(
                    "INSERT INTO component_activations (component_id, prompt_id, max_ci, "
                    "positions) VALUES (:c, :p, :m, :b)"
                ),
                [
                    {"c": c, "p": prompt_id, "m": m, "b": b}
                    for c, m, b in zip(
                        prompt.component_ids.tolist(),
                        from_ci_units(prompt.max_ci).tolist(),  # 0002 stored floats
                        prompt.position_blobs,
                        strict=True,
                    )
                ],
            )
            writes.bump_component_counters(
                connection, prompt.component_ids, from_ci_units(prompt.max_ci)
            )
    engine.dispose()
    return prepared


def test_upgrade_to_0003_fills_ci_sums_from_the_graphs(db_url: str) -> None:
    prepared = database_at_0002(db_url)
    assert upgrade(resolve_target(db_url)) == SCHEMA_REVISION
    with LocalAttrDB(db_url) as db:
        with db.engine.connect() as connection:
            for prompt_id, prompt in enumerate(prepared, start=1):
                stored = dict(
                    connection.execute(
                        text(
                            "SELECT component_id, ci_sum FROM component_activations "
                            "WHERE prompt_id = :p"
                        ),
                        {"p": prompt_id},
                    ).all()
                )
                if prompt.row["graph"] is not None:  # what a new build stores
                    expected = prompt.ci_sum
                else:  # max CI x positions, the most the index tells
                    expected = prompt.max_ci * [len(b) // 2 for b in prompt.position_blobs]
                # in CI units (0006), within the one unit the sum's float32 (0003) may move it
                found = np.array([stored[c] for c in prompt.component_ids.tolist()])
                assert found.dtype == np.int64 and np.abs(found - expected).max() <= 1
        key = db.list_components(limit=1)[0].key
        unpacked = db.find_prompts_with_components([key])  # the packed postings were dropped
        assert db.build_postings() == len(prepared)
        packed = db.find_prompts_with_components([key])
        assert [(h.prompt_id, h.score) for h in packed.hits] == [
            (h.prompt_id, h.score) for h in unpacked.hits
        ]
        assert db.get_cofiring(key, min_count=1) is not None


def contexts_at_0004(db_url: str, n: int) -> dict[str, dict[str, object]]:
    """A database at revision 0004 holding `n` activation contexts as that revision stored them
    (JSON text per component); returns them by component key."""
    target = resolve_target(db_url)
    engine = create_sync_engine(target)
    rng = np.random.default_rng(8)
    words = [f" w{i}" for i in range(40)]
    contexts: dict[str, dict[str, object]] = {}
    with engine.begin() as connection:
        command.upgrade(alembic_config(target, connection), "0004_corpus_attributions_edges")
        slots = writes.register_layers(connection, LAYERS)
        keys = [(name, i) for name, size in LAYERS.items() for i in range(size)][:n]
        for name, index in keys:
            contexts[f"{name}:{index}"] = {
                "subcomponent_idx": index,
                "mean_ci": round(float(rng.random()), 3),
                "example_tokens": [rng.choice(words, 8).tolist() for _ in range(6)],
                "example_ci": [np.round(rng.random(8), 3).tolist() for _ in range(6)],
                "pr_tokens": rng.choice(words, 5).tolist(),
            }
        rows = [
            {
                "c": slots[key.rsplit(":")[0]].first_component_id + int(key.rsplit(":")[1]),
                "d": orjson.dumps(context).decode(),
            }
            for key, context in contexts.items()
        ]
        if rows:
            connection.execute(
                text("INSERT INTO activation_contexts (component_id, data) VALUES (:c, :d)"), rows
            )
    engine.dispose()
    return contexts


@pytest.mark.parametrize("n", [0, 3, 52])  # 52: enough to train a dictionary on
def test_upgrade_to_0005_compresses_the_contexts(db_url: str, n: int) -> None:
    contexts = contexts_at_0004(db_url, n)
    target = resolve_target(db_url)
    assert upgrade(target) == SCHEMA_REVISION
    with LocalAttrDB(db_url) as db:
        assert db.get_activation_contexts() == contexts
        for key, context in list(contexts.items())[:5]:
            assert db.get_activation_context(key) == context
        with db.engine.connect() as connection:
            dictionaries = connection.execute(
                text("SELECT count(*) FROM activation_context_dictionaries")
            ).scalar_one()
            stored = connection.execute(
                text("SELECT sum(length(data)) FROM activation_contexts")
            ).scalar_one()
        assert dictionaries == (1 if n == 52 else 0)
        if n == 52:
            assert stored < 0.4 * sum(len(orjson.dumps(c)) for c in contexts.values())
        db.set_activation_contexts({"h.0.mlp.c_fc:0": {"mean_ci": 0.5}})  # written as new ones
        assert db.get_activation_context("h.0.mlp.c_fc:0") == {"mean_ci": 0.5}
    engine = create_sync_engine(target)
    with engine.begin() as connection:
        command.downgrade(alembic_config(target, connection), "0004_corpus_attributions_edges")
        result = connection.execute(text("SELECT component_id, data FROM activation_contexts"))
        rows = {component_id: data for component_id, data in result}
    engine.dispose()
    assert len(rows) == n + (0 if n == 52 else 1)
    assert all(isinstance(data, str) for data in rows.values())
    assert upgrade(target) == SCHEMA_REVISION
    with LocalAttrDB(db_url, readonly=True) as db:
        assert db.get_activation_contexts() == {
            **contexts,
            "h.0.mlp.c_fc:0": {"mean_ci": 0.5},
        }


def index_tables(db_url: str) -> tuple[list[tuple[Any, ...]], dict[int, bytes], set[Any]]:
    """The raw index rows, the packed prompt lists and the index names of the index table."""
    target = resolve_target(db_url)
    engine = create_sync_engine(target)
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT component_id, prompt_id, max_ci, positions, ci_sum "
                "FROM component_activations ORDER BY component_id, prompt_id"
            )
        ).all()
        lists = dict(
            connection.execute(text("SELECT prompt_id, component_ids FROM prompt_postings")).all()
        )
        names = {i["name"] for i in inspect(connection).get_indexes("component_activations")}
    engine.dispose()
    return [tuple(row) for row in rows], {p: bytes(b) for p, b in lists.items()}, names


def test_0006_keeps_the_index_in_integers_and_reads_it_by_prompt(db_url: str) -> None:
    rng = np.random.default_rng(6)
    vocabulary = [" a", " b", " c"]
    contexts = {
        f"h.0.mlp.c_fc:{i}": {
            "example_tokens": [["x", " b", " c"]],
            "example_token_ids": [[0, 1, 2]],
        }
        for i in range(LAYERS["h.0.mlp.c_fc"])  # enough to train a dictionary on
    }
    with LocalAttrDB(db_url) as db:
        db.register_layers(LAYERS)
        db.add_prompts([random_record(rng, n_nodes=40) for _ in range(12)])
        db.build_postings()
        db.set_vocabulary(vocabulary)
        db.set_activation_contexts(contexts)  # their tokens left to the vocabulary
        key = db.list_components(limit=1)[0].key
        before = db.find_prompts_with_components([key], rank="max_ci")
        cofiring = db.get_cofiring(key, min_count=1)
    rows, lists, names = index_tables(db_url)
    assert names == set() and len(lists) == 12  # a packed list per prompt, no prompt index
    assert all(isinstance(row[2], int) and isinstance(row[4], int) for row in rows)
    assert {p: unpack(b).tolist() for p, b in lists.items()} == {
        p: sorted(c for c, q, *_ in rows if q == p) for p in lists
    }
    target = resolve_target(db_url)
    engine = create_sync_engine(target)
    with engine.begin() as connection:
        command.downgrade(alembic_config(target, connection), "0005_compressed_contexts")
    engine.dispose()
    old_rows, old_lists, old_names = index_tables(db_url)
    assert old_names == {"ix_component_activations_prompt"} and old_lists == {}
    engine = create_sync_engine(target)
    with engine.connect() as connection:
        # stored whole again: 0005 reads them without the vocabulary
        dictionaries = connection.execute(
            text("SELECT id, data FROM activation_context_dictionaries")
        ).all()
        decoder = ContextDecoder({i: bytes(d) for i, d in dictionaries}, lambda: None)
        stored = connection.execute(text("SELECT data, dictionary_id FROM activation_contexts"))
        whole = [decoder.decode(bytes(d), i) for d, i in stored]
    engine.dispose()
    assert whole == list(contexts.values())
    assert [row[2] for row in old_rows] == pytest.approx([row[2] * CI_UNIT for row in rows])
    assert upgrade(target) == SCHEMA_REVISION
    assert index_tables(db_url) == (rows, lists, names)  # exactly as written
    with LocalAttrDB(db_url) as db:
        db.build_postings()
        after = db.find_prompts_with_components([key], rank="max_ci")
        assert [(h.prompt_id, h.score) for h in after.hits] == [
            (h.prompt_id, h.score) for h in before.hits
        ]
        assert db.get_cofiring(key, min_count=1) == cofiring
        assert db.get_activation_contexts() == contexts
