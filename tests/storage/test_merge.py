from pathlib import Path

import numpy as np
import pytest

from locattr import LocalAttrDB
from locattr.storage import DatabaseError, PromptRecord
from tests.graphs import LAYERS, random_record


def fill(db: LocalAttrDB, records: list[PromptRecord], *, layer_order: dict[str, int]) -> None:
    db.register_layers(layer_order)
    db.set_meta({"run": "demo", "ci_threshold": 1e-6})
    db.add_prompts(records)


def test_merge_remaps_ids_and_skips_known_prompts(db_url: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    records = [random_record(rng) for _ in range(12)]
    reversed_layers = dict(reversed(list(LAYERS.items())))  # different component ids per shard
    with LocalAttrDB(tmp_path / "a.db") as a, LocalAttrDB(tmp_path / "b.db") as b:
        fill(a, records[:8], layer_order=LAYERS)
        fill(b, records[5:], layer_order=reversed_layers)  # overlaps a on 3 prompts
        b.set_vocabulary([" a", " b"])
        context = {"example_tokens": [["x", " b"]], "example_token_ids": [[0, 1]]}
        b.set_activation_contexts({"h.0.mlp.c_fc:3": {"mean_ci": 0.5, **context}})
        with LocalAttrDB(db_url) as merged:
            assert merged.merge_from(a) == 8
            assert merged.merge_from(b) == 4
            assert merged.merge_from(b) == 0
            assert merged.get_prompt_count() == 12
            assert merged.get_meta()["run"] == "demo"
            assert merged.get_vocabulary() == [" a", " b"]  # output labels, context tokens
            assert merged.get_activation_context("h.0.mlp.c_fc:3") == {"mean_ci": 0.5, **context}
            by_identity = {p.identity: p.id for p in merged.iter_prompts()}
            for record in records:
                graph = merged.get_graph(by_identity[record.identity])
                assert graph is not None and graph.same_as(record.graph)
            # index and counters equal a database built in one go
            with LocalAttrDB(tmp_path / "one.db") as one:
                fill(one, records, layer_order=LAYERS)
                assert merged.get_unique_components() == one.get_unique_components()
                for key in one.get_unique_components():
                    assert _same_stats_up_to_ids(merged, one, key)
                    found = merged.find_prompts_with_components([key], limit=1000)
                    expected = one.find_prompts_with_components([key], limit=1000)
                    assert found.total == expected.total
                    assert identities(merged, found.prompt_ids) == identities(
                        one, expected.prompt_ids
                    )


def identities(db: LocalAttrDB, prompt_ids: list[int]) -> list[str]:
    return sorted(info.identity for i in prompt_ids if (info := db.get_prompt(i)) is not None)


def _same_stats_up_to_ids(a: LocalAttrDB, b: LocalAttrDB, key: str) -> bool:
    sa, sb = a.get_component_stats(key), b.get_component_stats(key)
    assert sa is not None and sb is not None
    return (sa.prompt_count, sa.mean_max_ci, sa.max_max_ci) == pytest.approx(
        (sb.prompt_count, sb.mean_max_ci, sb.max_max_ci)
    )


def test_merge_refuses_another_build(tmp_path: Path) -> None:
    with LocalAttrDB(tmp_path / "a.db") as a, LocalAttrDB(tmp_path / "b.db") as b:
        a.set_meta({"run": "wandb:x/y/runs/one"})
        b.set_meta({"run": "wandb:x/y/runs/two"})
        with pytest.raises(DatabaseError, match="'run' differs"):
            a.merge_from(b)


def test_merge_refuses_a_build_without_inputs_and_outputs_into_one_with_them(
    tmp_path: Path,
) -> None:
    """A build from before `inputs`/`outputs` were recorded stored neither, and says so."""
    with LocalAttrDB(tmp_path / "a.db") as a, LocalAttrDB(tmp_path / "b.db") as b:
        a.set_meta({"run": "demo", "inputs": True, "outputs": True, "output_prob_threshold": 0.01})
        b.set_meta({"run": "demo"})
        with pytest.raises(DatabaseError, match="'inputs' differs"):
            a.merge_from(b)
        b.set_meta({"inputs": False, "outputs": True, "output_prob_threshold": 0.05})
        with pytest.raises(DatabaseError, match="'inputs' differs"):
            a.merge_from(b)
        b.set_meta({"inputs": True})
        with pytest.raises(DatabaseError, match="'output_prob_threshold' differs"):
            a.merge_from(b)
