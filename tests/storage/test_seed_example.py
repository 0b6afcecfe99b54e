"""The original system's Python example, as the README shows it, runs against a database built
by `locattr-generate`; `pairs_json` holds the stored graph in the original's pairs format."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from locattr import LocalAttrDB
from locattr.generate import GenerateOptions, generate
from locattr.graph import Graph
from locattr.seed_pairs import crosses_positions

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLE_KEYS = ("h.0.attn.q_proj:5", "h.1.mlp.c_fc:12")


def readme_example() -> str:
    text = README.read_text()
    marker = text.index("<!-- original-example")
    match = re.compile(r"```python\n(.*?)```", re.S).search(text, marker)
    assert match is not None, "the README lost the original's example"
    return match.group(1)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("seed")
    (root / "data").mkdir()
    generate(
        GenerateOptions(
            model="demo",
            output=str(root / "data" / "local_attr.db"),
            n_prompts=12,
            n_ctx=16,
            batch_size=6,
            device="cpu",
        )
    )
    return root


def cofiring_pair(db: LocalAttrDB) -> tuple[str, str]:
    """Two components of blocks 0 and 1 that fire together in some prompt (the example's own
    keys name components of the run the original was written for)."""
    first = next(k for k in db.get_unique_components() if k.startswith("h.0."))
    prompt = db.find_prompts_with_components([first])[0]
    graph = db.get_graph(prompt)
    assert graph is not None
    second = next(
        f"{graph.layers[layer]}:{component}"
        for layer, component in zip(graph.node_layer, graph.node_component, strict=True)
        if graph.layers[layer].startswith("h.1.")
    )
    return first, second


def test_the_readme_example_runs_as_written(
    demo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalAttrDB(demo_dir / "data" / "local_attr.db", readonly=True) as db:
        keys = cofiring_pair(db)
    source = readme_example()
    for theirs, ours in zip(EXAMPLE_KEYS, keys, strict=True):
        assert f'"{theirs}"' in source
        source = source.replace(f'"{theirs}"', f'"{ours}"')
    monkeypatch.chdir(demo_dir)
    printed = io.StringIO()
    namespace: dict[str, object] = {}
    with contextlib.redirect_stdout(printed):
        exec(compile(source, "README example", "exec"), namespace)
    db = namespace["db"]
    assert isinstance(db, LocalAttrDB)
    prompt_ids = namespace["prompt_ids"]
    expected = db.find_prompts_with_components(keys, require_all=True, limit=50).prompt_ids
    assert expected and list(prompt_ids) == expected  # type: ignore[call-overload]
    pairs = json.loads(printed.getvalue().splitlines()[1])
    graph = db.get_graph(expected[0])
    assert graph is not None
    assert_pairs_hold(pairs, graph)
    assert namespace["act_ctx"] == db.get_activation_contexts()
    db.close()


def assert_pairs_hold(pairs: list[dict], graph: Graph) -> None:
    """Every edge of `graph` appears once in `pairs`, at its positions and local indices, its
    value rounded to 6 decimals; nothing else does."""
    expected = {}
    for j in range(graph.n_edges):
        s, t = int(graph.edge_source[j]), int(graph.edge_target[j])
        key = (
            graph.layers[graph.node_layer[s]],
            int(graph.node_pos[s]),
            int(graph.node_component[s]),
            graph.layers[graph.node_layer[t]],
            int(graph.node_pos[t]),
            int(graph.node_component[t]),
        )
        expected[key] = round(float(graph.edge_value[j]), 6)
    found = {}
    for pair in pairs:
        source, target = pair["source"], pair["target"]
        assert pair["is_cross_seq"] == crosses_positions(source, target)
        c_in, c_out = pair["trimmed_c_in_idxs"], pair["trimmed_c_out_idxs"]
        assert c_in == sorted(set(c_in)) and c_out == sorted(set(c_out))
        for entry in pair["attribution"]:
            if pair["is_cross_seq"]:
                s_in, a, s_out, b, value = entry
            else:
                s_in, a, b, value = entry
                s_out = s_in
            key = (source, s_in, c_in[a], target, s_out, c_out[b])
            assert key not in found
            found[key] = value
    assert found == expected
    assert any(p["is_cross_seq"] for p in pairs), "the demo graphs have attention edges"


def test_search_page_is_the_list_of_its_prompt_ids(demo_dir: Path) -> None:
    with LocalAttrDB(demo_dir / "data" / "local_attr.db", readonly=True) as db:
        key = db.get_unique_components()[0]
        page = db.find_prompts_with_components([key], limit=3)
        assert len(page) == len(page.hits) == min(3, page.total) > 0
        assert list(page) == page.prompt_ids == [page[i] for i in range(len(page))]
        assert page[-1] == page.hits[-1].prompt_id and page.prompt_ids[0] in page
        assert not db.find_prompts_with_components(["h.0.attn.q_proj:100000"])


def test_pairs_json_is_none_without_a_graph(tmp_path: Path) -> None:
    path = tmp_path / "index-only.db"
    generate(
        GenerateOptions(
            model="demo", output=str(path), n_prompts=2, n_ctx=8, device="cpu", keep_graphs=False
        )
    )
    with LocalAttrDB(path, readonly=True) as db:
        prompts = list(db.iter_prompts())
        assert prompts and all(p.pairs_json is None for p in prompts)
    assert not any(p.has_graph for p in prompts)
