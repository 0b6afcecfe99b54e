"""`locattr query`, `locattr db upgrade` and `locattr merge` run as real processes."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from locattr import LocalAttrDB
from locattr.graph import Graph
from locattr.storage import PromptRecord
from locattr.storage.models import SCHEMA_REVISION

LOCATTR = str(Path(sys.executable).with_name("locattr"))


def run(*args: str, db: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("LOCATTR_DB", None)
    if db is not None:
        env["LOCATTR_DB"] = db
    return subprocess.run([LOCATTR, *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture
def small_db(tmp_path: Path) -> str:
    path = str(tmp_path / "small.db")
    with LocalAttrDB(path) as db:
        db.register_layers({"h.0.mlp.c_fc": 8, "h.0.mlp.down_proj": 8})
        graph = Graph.from_records(
            [("h.0.mlp.c_fc", 1, 3, 0.75), ("h.0.mlp.down_proj", 1, 5, 0.5)],
            [("h.0.mlp.c_fc", 1, 3, "h.0.mlp.down_proj", 1, 5, -0.125)],
        )
        db.add_prompt(PromptRecord("p1", [5, 6], ["Once", " upon [x]"], graph))
        db.add_prompt(
            PromptRecord("p2", [7], ["Hi"], Graph.from_records([("h.0.mlp.c_fc", 0, 3, 0.25)], []))
        )
    return path


def test_search_lists_ranked_prompts(small_db: str) -> None:
    result = run("query", "search", "h.0.mlp.c_fc:3", "--any", "--db", small_db)
    assert result.returncode == 0, result.stderr
    assert "2 prompts where any of 1 component fires" in result.stdout
    assert result.stdout.index("Once upon [x]") < result.stdout.index("Hi")
    both = run("query", "search", "h.0.mlp.c_fc:3", "h.0.mlp.down_proj:5", db=small_db)
    assert "1 prompt where all of 2 components fire" in both.stdout
    assert "0.750 @ [1]" in both.stdout
    together = run(
        "query", "search", "h.0.mlp.c_fc:3", "h.0.mlp.down_proj:5", "--same-position", db=small_db
    )
    assert "1 prompt where all of 2 components fire" in together.stdout
    strong = run("query", "search", "h.0.mlp.c_fc:3", "--min-ci", "0.5", db=small_db)
    assert "1 prompt where all of 1 component fires" in strong.stdout


def test_stats_components_and_prompt(small_db: str) -> None:
    stats = run("query", "stats", "h.0.mlp.c_fc:3", "--db", small_db)
    assert stats.returncode == 0
    assert "prompts where it fires" in stats.stdout and "0.5000" in stats.stdout  # mean max CI
    components = run("query", "components", "--db", small_db)
    lines = [line for line in components.stdout.splitlines() if "h.0.mlp" in line]
    assert "h.0.mlp.c_fc:3" in lines[0] and "100.0%" in lines[0]
    prompt = run("query", "prompt", "1", "--db", small_db)
    assert "2 tokens, 2 nodes, 1 edge\n" in prompt.stdout
    assert "text: 'Once upon [x]'" in prompt.stdout and "[1] upon [x]" in prompt.stdout
    source, target, value = prompt.stdout.splitlines()[-2].strip("│ ").split("│")
    assert source.strip() == "h.0.mlp.c_fc:3 @1 ' upon [x]'"
    assert target.strip() == "h.0.mlp.down_proj:5 @1 ' upon [x]'"
    assert value.strip() == "-0.12500"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["query", "search", "h.0.attn.q_proj"], "expected 'layer:index'"),
        (["query", "search", "x:abc"], "expected 'layer:index'"),
        (["query", "search", "h.0.mlp.c_fc:3", "--cursor", "zzz"], "invalid cursor"),
        (["query", "search", "h.0.mlp.c_fc:3", "--limit", "100000"], "limit must be"),
    ],
)
def test_bad_input_is_one_line_without_traceback(
    small_db: str, args: list[str], message: str
) -> None:
    result = run(*args, "--db", small_db)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_unknown_things_are_reported(small_db: str) -> None:
    search = run("query", "search", "h.9.mlp:1", "--db", small_db)
    assert search.returncode == 0 and "unknown component h.9.mlp:1" in search.stdout
    stats = run("query", "stats", "h.0.mlp.c_fc:99", "--db", small_db)
    assert stats.returncode == 2  # as for a malformed key
    assert stats.stderr.startswith("locattr: error: unknown component h.0.mlp.c_fc:99")
    prompt = run("query", "prompt", "99", "--db", small_db)
    assert prompt.returncode == 2
    assert prompt.stderr == "locattr: error: no prompt 99 in this database\n"


def test_database_problems_name_the_file(tmp_path: Path) -> None:
    missing = run("query", "components", "--db", str(tmp_path / "nope.db"))
    assert (
        missing.returncode == 2
        and "nope.db" in missing.stderr
        and "Traceback" not in missing.stderr
    )
    garbage = tmp_path / "garbage.db"
    garbage.write_text("not a database" * 100)
    result = run("query", "components", db=str(garbage))
    assert result.returncode == 2 and "garbage.db" in result.stderr
    unset = run("query", "components")
    assert unset.returncode != 0 and "LOCATTR_DB" in unset.stderr + unset.stdout


def test_db_upgrade_and_merge(tmp_path: Path, small_db: str) -> None:
    fresh = str(tmp_path / "fresh.db")
    upgraded = run("db", "upgrade", "--db", fresh)
    assert upgraded.returncode == 0 and SCHEMA_REVISION in upgraded.stdout
    optimized = run("db", "optimize", "--db", small_db)
    assert optimized.returncode == 0 and "packed through prompt 2" in optimized.stdout
    merged = run("merge", str(tmp_path / "merged.db"), small_db, fresh)
    assert merged.returncode == 0, merged.stderr
    assert "2 prompts added" in merged.stdout and "merged.db: 2 prompts" in merged.stdout
    assert f"{fresh}: 0 prompts added" in merged.stdout


def test_serve_on_a_port_in_use_says_so_before_claiming_to_serve(small_db: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--db", small_db, "--port", str(port))
    assert result.returncode == 2
    assert result.stderr.startswith(f"locattr: error: cannot listen on 127.0.0.1:{port}: ")
    assert len(result.stderr.splitlines()) == 1 and "serving" not in result.stdout


def test_the_served_socket_is_tcp_so_responses_are_not_delayed() -> None:
    """asyncio turns Nagle off (TCP_NODELAY) only on sockets that say they are TCP; without it
    each small response from `locattr serve` waited ~40 ms for the client's delayed ACK."""
    from locattr.cli.main import _bound_socket

    sock = _bound_socket("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_prompt_labels_an_output_node_with_the_token_it_predicts(tmp_path: Path) -> None:
    path = str(tmp_path / "outputs.db")
    with LocalAttrDB(path) as db:
        db.register_layers({"h.0.mlp.c_fc": 8})
        db.set_vocabulary(["<eos>", " cat", " dog"])
        graph = Graph.from_records(
            [("h.0.mlp.c_fc", 0, 3, 0.75), ("output", 0, 2, 0.5)],
            [("h.0.mlp.c_fc", 0, 3, "output", 0, 2, 0.25)],
        )
        db.add_prompt(PromptRecord("p1", [1], ["The"], graph))
    prompt = run("query", "prompt", "1", "--db", path)
    assert prompt.returncode == 0, prompt.stderr
    source, target, _ = prompt.stdout.splitlines()[-2].strip("│ ").split("│")
    assert (source.strip(), target.strip()) == ("h.0.mlp.c_fc:3 @0 'The'", "output:2 @0 -> ' dog'")
