"""Several writer processes, killed writers and concurrent readers on one database."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from locattr import LocalAttrDB

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def start_writer(
    url: str, seed: int, n_prompts: int, batch: int, n_edges: int = 40
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.storage.writer_process",
            url,
            str(seed),
            str(n_prompts),
            str(batch),
            str(n_edges),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def inconsistencies(db: LocalAttrDB) -> list[str]:
    """Everything that would show a half-written prompt, read in one snapshot."""
    problems = []
    with db.engine.connect() as connection:
        partial = connection.execute(
            text(
                "SELECT p.id, p.n_components, COUNT(a.prompt_id) FROM prompts p "
                "LEFT JOIN component_activations a ON a.prompt_id = p.id "
                "GROUP BY p.id, p.n_components HAVING COUNT(a.prompt_id) != p.n_components"
            )
        ).all()
        problems += [f"prompt {row[0]} has {row[2]} of {row[1]} index rows" for row in partial]
        orphans = connection.execute(
            text(
                "SELECT COUNT(*) FROM component_activations a "
                "WHERE NOT EXISTS (SELECT 1 FROM prompts p WHERE p.id = a.prompt_id)"
            )
        ).scalar_one()
        if orphans:
            problems.append(f"{orphans} index rows without their prompt")
        counted = connection.execute(
            text("SELECT COALESCE(SUM(prompt_count), 0) FROM components")
        ).scalar_one()
        rows = connection.execute(text("SELECT COUNT(*) FROM component_activations")).scalar_one()
        if counted != rows:
            problems.append(f"component counters say {counted} index rows, the index has {rows}")
        no_graph = connection.execute(
            text("SELECT COUNT(*) FROM prompts WHERE graph IS NULL")
        ).scalar_one()
        if no_graph:
            problems.append(f"{no_graph} prompts without their graph")
    return problems


def test_four_processes_write_250_prompts_each(db_url: str) -> None:
    LocalAttrDB(db_url).close()  # create the schema once, as locattr-generate's parent does
    writers = [start_writer(db_url, seed, 250, 5) for seed in range(4)]
    for writer in writers:
        _, stderr = writer.communicate(timeout=300)
        assert writer.returncode == 0, stderr
        assert "locked" not in stderr
    with LocalAttrDB(db_url, readonly=True) as db:
        assert db.get_prompt_count() == 1000
        assert inconsistencies(db) == []


def test_killed_writer_leaves_only_whole_prompts(db_url: str) -> None:
    LocalAttrDB(db_url).close()
    reader = LocalAttrDB(db_url, readonly=True)
    seen_during_writes = 0
    try:
        for trial, delay in enumerate([0.3, 0.9, 1.7]):
            writer = start_writer(db_url, 100 + trial, -1, 8, n_edges=2000)
            assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline:  # readers never see a partial prompt
                assert inconsistencies(reader) == []
                seen_during_writes += 1
            os.kill(writer.pid, signal.SIGKILL)
            writer.wait(timeout=30)
            assert writer.returncode == -signal.SIGKILL
            assert inconsistencies(reader) == []
        assert reader.get_prompt_count() > 0
        assert seen_during_writes > 3
    finally:
        reader.close()
    # the database is still writable and sound after the kills
    with LocalAttrDB(db_url) as db:
        before = db.get_prompt_count()
        writer = start_writer(db_url, 999, 3, 3)
        assert writer.wait(timeout=60) == 0
        assert db.get_prompt_count() == before + 3
        if db.target.is_sqlite:
            with db.engine.connect() as connection:
                assert connection.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
