"""`locattr query search --rank/--not`, `locattr query cofiring` and `locattr db upgrade` from
revision 0002, run as real processes."""

from pathlib import Path

from locattr import LocalAttrDB
from locattr.graph import Graph
from locattr.storage import PromptRecord
from tests.cli.test_query_cli import run
from tests.storage.test_schema import database_at_0002

A, B, C = "h.0.mlp.c_fc:3", "h.0.mlp.down_proj:5", "h.0.mlp.c_fc:4"


def test_search_rank_and_exclusion(tmp_path: Path) -> None:
    path = str(tmp_path / "corpus.db")
    fires = [
        {A: [(0, 1.0)], B: [(0, 0.5)]},
        {A: [(0, 1.0), (1, 1.0)], B: [(1, 0.5)], C: [(1, 0.5)]},  # more CI mass: first
        {A: [(1, 1.0)], B: [(1, 0.5)]},
    ]
    with LocalAttrDB(path) as db:
        db.register_layers({"h.0.mlp.c_fc": 8, "h.0.mlp.down_proj": 8})
        for i, by_key in enumerate(fires):
            nodes = [
                (key.rsplit(":")[0], pos, int(key.rsplit(":")[1]), ci)
                for key, hits in by_key.items()
                for pos, ci in hits
            ]
            graph = Graph.from_records(nodes, [])
            db.add_prompt(PromptRecord(f"p{i}", [1, 2], [f"w{i}", " x"], graph))

    def ids(*args: str) -> list[str]:
        result = run("query", "search", A, B, *args, "--db", path)
        assert result.returncode == 0, result.stderr
        rows = [line.split() for line in result.stdout.splitlines() if line.startswith("│")]
        return [row[1] for row in rows if row[1].isdigit()]

    assert ids() == ["2", "1", "3"]
    assert ids("--rank", "max_ci") == ["1", "2", "3"]  # all 1.5: by id
    assert ids("--not", C) == ["1", "3"]
    assert ids("--not", C, "--not", "h.9.mlp:1") == ["1", "3"]
    titled = " ".join(run("query", "search", A, "--not", C, "--db", path).stdout.split())
    assert "2 prompts where all of 1 component fires, none of 1 (ranked by specificity)" in titled
    both = run("query", "search", A, "--not", A, "--db", path)
    assert both.returncode == 2 and "Traceback" not in both.stderr
    assert both.stderr == (
        f"locattr: error: {A} is both searched for and excluded, an exclusion that empties the "
        "query: drop it from one of the two lists\n"
    )
    bad_rank = run("query", "search", A, "--rank", "sum", "--db", path)
    assert bad_rank.returncode == 2 and "'sum' is not one of specificity, max_ci" in bad_rank.stderr

    cofiring = run("query", "cofiring", A, "--min-count", "1", "--db", path)
    assert cofiring.returncode == 0, cofiring.stderr
    rows = [line.split("│")[1:-1] for line in cofiring.stdout.splitlines() if "h.0.mlp" in line]
    assert [[cell.strip() for cell in row] for row in rows if row] == [
        [B, "3", "3", "1.000", "1.000"],
        [C, "1", "1", "1.000", "0.333"],
    ]
    unknown = run("query", "cofiring", "h.0.mlp.c_fc:99", "--db", path)
    assert unknown.returncode == 2 and "unknown component h.0.mlp.c_fc:99" in unknown.stderr
    bad_order = run("query", "cofiring", A, "--order", "size", "--db", path)
    assert (
        bad_order.returncode == 2
        and "'size' is not one of lift, jaccard, count" in bad_order.stderr
    )


def test_db_upgrade_from_0002_repacks_the_index(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    database_at_0002(path)
    upgraded = run("db", "upgrade", "--db", path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "search index packed through prompt 4" in upgraded.stdout
    again = run("db", "upgrade", "--db", path)
    assert again.returncode == 0 and "packed" not in again.stdout
