"""The shipped demo run loads through the public loader and matches its recorded metrics."""

from __future__ import annotations

import json

import pytest
import torch

from locattr.compute import LoadedRun, compute_graph, load_run
from locattr.demo import RUN_ROOT, demo_prompts, demo_run_path
from locattr.demo.metrics import ALIVE_THRESHOLD, decomposition_metrics
from locattr.demo.tokenizer import load_tokenizer
from locattr.demo.windows import corpus_windows

MAX_SHIPPED_BYTES = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def run() -> LoadedRun:
    return load_run(demo_run_path())


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads((demo_run_path() / "metrics.json").read_text())


def test_shipped_size_is_small() -> None:
    total = sum(p.stat().st_size for p in RUN_ROOT.rglob("*") if p.is_file())
    assert total <= MAX_SHIPPED_BYTES, f"shipped demo is {total} bytes"


def test_run_names_its_pretrain_run_and_tokenizer_relatively(run: LoadedRun) -> None:
    assert run.config.pretrained_model_name == "../pretrain"
    assert run.config.tokenizer_name == "../tokenizer"
    assert run.checkpoint.name == f"model_{run.config.steps}.pth"
    assert run.tokenizer.decode(run.tokenizer("the dog runs .")["input_ids"]) == "the dog runs ."


def test_reproduces_recorded_metrics(run: LoadedRun, recorded: dict) -> None:
    heldout = recorded["heldout"]
    windows = corpus_windows(
        load_tokenizer(RUN_ROOT / "tokenizer"),
        "heldout",
        heldout["n_windows"],
        heldout["n_ctx"],
        heldout["seed"],
    )
    with torch.no_grad():
        kl, cis = decomposition_metrics(run.model, windows)
    assert kl == pytest.approx(recorded["ci_masked_kl"], abs=1e-4)
    assert recorded["alive_threshold"] == ALIVE_THRESHOLD
    for layer, fraction in recorded["alive_fraction"].items():
        alive = (cis[layer] >= ALIVE_THRESHOLD).float().mean().item()
        assert alive == pytest.approx(fraction, abs=1e-3), layer


def test_graph_on_a_demo_prompt_is_not_empty(run: LoadedRun) -> None:
    (prompt,) = demo_prompts(1, n_ctx=16, seed=5)
    assert len(prompt) == 16
    graph = compute_graph(run, prompt)
    assert len(graph.nodes) > 0
    assert len(graph.edges) > 0


def test_demo_prompts_are_deterministic_held_out_windows() -> None:
    first = demo_prompts(3, n_ctx=32, seed=1)
    assert first == demo_prompts(3, n_ctx=32, seed=1)
    assert [len(p) for p in first] == [32, 32, 32]
    assert first != demo_prompts(3, n_ctx=32, seed=2)
