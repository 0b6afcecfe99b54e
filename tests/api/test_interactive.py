"""Graphs for your own prompt and interventions, served by a real server holding the demo model
over a demo database that `locattr-generate` builds; oracles from the compute layer called here
(`compute_graph`, the plain target model, the graph's `output` nodes for the CI-masked model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from locattr import LocalAttrDB
from locattr.api.settings import Settings
from locattr.compute import LoadedRun, compute_graph, load_run
from locattr.demo import demo_run_path
from locattr.graph import OUTPUT_LAYER, PSEUDO_LAYERS, Graph
from locattr.pruning import prune_graph
from tests.api.server import build_demo_db, running_server

N_PROMPTS = 24
N_CTX = 32
TEXT = "once there was a little girl named mia . she had a red ball ."


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("interactive") / "demo.db"
    build_demo_db(path, N_PROMPTS, N_CTX)
    return str(path)


@pytest.fixture(scope="module")
def meta(demo_db: str) -> dict[str, Any]:
    with LocalAttrDB(demo_db, readonly=True) as db:
        return db.get_meta()


@pytest.fixture(scope="module")
def run() -> LoadedRun:
    return load_run(demo_run_path())


@pytest.fixture(scope="module")
def model_url(demo_db: str) -> Iterator[str]:
    with running_server(Settings(db=demo_db, model="demo")) as url:
        yield url


@pytest.fixture
def http(model_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=model_url, timeout=60) as client:
        yield client


def stored_token_ids(demo_db: str, prompt_id: int) -> list[int]:
    with LocalAttrDB(demo_db, readonly=True) as db:
        info = db.get_prompt(prompt_id)
    assert info is not None
    return info.token_ids


def edge_set(body_or_graph: dict[str, Any] | Graph) -> dict[tuple[Any, ...], float]:
    """Edges by their ends (layer, pos, component), from a response or a graph."""
    if isinstance(body_or_graph, Graph):
        g = body_or_graph
        nodes = [
            (g.layers[layer], pos, comp)
            for layer, pos, comp in zip(
                g.node_layer.tolist(), g.node_pos.tolist(), g.node_component.tolist(), strict=True
            )
        ]
        pairs = zip(
            g.edge_source.tolist(), g.edge_target.tolist(), g.edge_value.tolist(), strict=True
        )
        return {(nodes[s], nodes[t]): v for s, t, v in pairs}
    nodes = [(n["layer"], n["pos"], n["component"]) for n in body_or_graph["nodes"]]
    return {(nodes[e["source"]], nodes[e["target"]]): e["value"] for e in body_or_graph["edges"]}


def oracle_graph(
    run: LoadedRun, ids: list[int], meta: dict[str, Any], attr_threshold: float | None = None
) -> Graph:
    """The graph as locattr-generate computed the stored ones (or with another threshold)."""
    return compute_graph(
        run,
        ids,
        ci_threshold=meta["ci_threshold"],
        attr_threshold=meta["attr_threshold"] if attr_threshold is None else attr_threshold,
        include_wte=meta["inputs"],
        include_output=meta["outputs"],
        output_prob_threshold=meta["output_prob_threshold"],
    )


# ---- POST /api/graphs ---------------------------------------------------------------------------


def test_graph_of_token_ids_equals_compute_graph(
    http: httpx.Client, run: LoadedRun, meta: dict[str, Any], demo_db: str
) -> None:
    ids = stored_token_ids(demo_db, 3)
    response = http.post("/api/graphs", json={"token_ids": ids, "top_k": 100_000})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = oracle_graph(run, ids, meta)
    assert meta["inputs"] and meta["outputs"]  # the demo stores `wte` and `output` nodes
    assert {n["layer"] for n in body["nodes"]} >= set(PSEUDO_LAYERS)
    assert body["token_ids"] == ids and body["id"] == 0 and body["unknown_tokens"] == 0
    assert (body["n_nodes_total"], body["n_edges_total"]) == (expected.n_nodes, expected.n_edges)
    assert body["n_edges_dropped"] == 0
    got, want = edge_set(body), edge_set(expected)
    assert got.keys() == want.keys()
    np.testing.assert_allclose([got[k] for k in want], list(want.values()), rtol=1e-5, atol=1e-7)
    # The stored prompt's tokens, as locattr-generate wrote them.
    stored = http.get("/api/prompt/3", params={"top_k": 1}).json()
    assert body["tokens"] == stored["tokens"]
    assert body["ci_threshold"] == meta["ci_threshold"]
    outputs = {n["component"] for n in body["nodes"] if n["layer"] == OUTPUT_LAYER}
    assert outputs and set(body["output_tokens"]) == {str(i) for i in outputs}
    assert body["attr_threshold"] == meta["attr_threshold"]


def test_graph_of_text_with_thresholds_and_pruning(
    http: httpx.Client, run: LoadedRun, meta: dict[str, Any]
) -> None:
    ids = [int(i) for i in run.tokenizer.encode(TEXT, add_special_tokens=False)]
    asked = {"text": TEXT, "top_k": 50, "normalize": "l1_target", "attr_threshold": 1e-3}
    first = http.post("/api/graphs", json=asked).json()
    expected = oracle_graph(run, ids, meta, attr_threshold=1e-3)
    pruned = prune_graph(expected, top_k=50, normalize="l1_target")
    assert first["token_ids"] == ids and first["attr_threshold"] == 1e-3
    assert first["n_edges_total"] == expected.n_edges
    assert first["n_edges_dropped"] == pruned.n_edges_dropped
    got, want = edge_set(first), edge_set(pruned.graph)
    assert got.keys() == want.keys()
    np.testing.assert_allclose([got[k] for k in want], list(want.values()), rtol=1e-5)
    assert first["source"] == {"kind": "text", "text": TEXT}
    again = http.post("/api/graphs", json=asked).json()
    assert not first["cached"] and again["cached"]
    assert {k: v for k, v in again.items() if k != "cached"} == {
        k: v for k, v in first.items() if k != "cached"
    }


def test_unknown_words_are_counted(http: httpx.Client) -> None:
    body = http.post("/api/graphs", json={"text": "once zorblax there was a qwfp"}).json()
    assert body["unknown_tokens"] == 2
    assert len(body["tokens"]) == 6


# ---- POST /api/interventions -----------------------------------------------------------------


def intervene(http: httpx.Client, prompt: dict[str, Any], mode: str, keys: list[str], **more: Any):
    body = {**prompt, "intervention": {"mode": mode, "components": keys, **more}, "top_k": 10}
    response = http.post("/api/interventions", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def probs_of(side: list[dict[str, Any]]) -> dict[int, float]:
    return {t["token_id"]: t["prob"] for t in side}


def ci_masked_probs(run: LoadedRun, ids: list[int]) -> dict[int, dict[int, float]]:
    """The CI-masked model's probabilities >= 1e-3, from the graph's `output` nodes (which
    `compute_graph` takes from that model): position -> token id -> probability."""
    graph = compute_graph(run, ids, include_output=True, output_prob_threshold=1e-3)
    found: dict[int, dict[int, float]] = {}
    output = graph.layers.index(OUTPUT_LAYER)
    for layer, pos, token, prob in zip(
        graph.node_layer.tolist(),
        graph.node_pos.tolist(),
        graph.node_component.tolist(),
        graph.node_ci.tolist(),
        strict=True,
    ):
        if layer == output:
            found.setdefault(pos, {})[token] = prob
    return found


def alive_keys(run: LoadedRun, ids: list[int], threshold: float) -> list[str]:
    graph = compute_graph(run, ids, ci_threshold=threshold)
    return sorted(
        {
            f"{graph.layers[layer]}:{comp}"
            for layer, comp in zip(
                graph.node_layer.tolist(), graph.node_component.tolist(), strict=True
            )
        }
    )


def test_ablating_nothing_reproduces_the_ci_masked_model(
    http: httpx.Client, run: LoadedRun, demo_db: str
) -> None:
    ids = stored_token_ids(demo_db, 5)
    body = intervene(http, {"prompt_id": 5}, "ablate", [])
    assert body["prompt_id"] == 5 and body["token_ids"] == ids
    assert len(body["positions"]) == len(ids)
    oracle = ci_masked_probs(run, ids)
    with torch.no_grad():
        target = run.model(torch.tensor([ids])).output.softmax(-1)[0]  # the plain target
    for pos, effect in enumerate(body["positions"]):
        assert effect["pos"] == pos
        assert effect["intervened"] == effect["spd"]
        assert effect["delta_logprob_top"] == 0
        assert effect["delta_logprob_next"] == (0 if pos < len(ids) - 1 else None)
        for token, prob in probs_of(effect["spd"]).items():
            if prob >= 1e-3:
                assert oracle[pos][token] == pytest.approx(prob, rel=1e-4, abs=1e-6)
        expected = oracle[pos]
        top = max(expected, key=lambda t: expected[t])
        assert effect["spd"][0]["token_id"] == top
        for token, prob in probs_of(effect["target"]).items():
            assert float(target[pos, token]) == pytest.approx(prob, rel=1e-4, abs=1e-7)


def test_keeping_every_alive_component_reproduces_it_and_fewer_do_not(
    http: httpx.Client, run: LoadedRun, demo_db: str, meta: dict[str, Any]
) -> None:
    ids = stored_token_ids(demo_db, 6)
    keys = alive_keys(run, ids, meta["ci_threshold"])
    baseline = intervene(http, {"token_ids": ids}, "ablate", [])
    kept = intervene(http, {"token_ids": ids}, "keep_only", keys)
    for mine, base in zip(kept["positions"], baseline["positions"], strict=True):
        assert [t["token_id"] for t in mine["intervened"]] == [t["token_id"] for t in base["spd"]]
        np.testing.assert_allclose(
            [t["prob"] for t in mine["intervened"]], [t["prob"] for t in base["spd"]], atol=1e-5
        )
        assert abs(mine["delta_logprob_top"]) < 1e-4
    fewer = intervene(http, {"token_ids": ids}, "keep_only", keys[: len(keys) // 2])
    assert max(abs(p["delta_logprob_top"]) for p in fewer["positions"]) > 1e-2


def test_ablating_a_component_changes_only_the_positions_it_reaches(
    http: httpx.Client, run: LoadedRun, demo_db: str, meta: dict[str, Any]
) -> None:
    ids = stored_token_ids(demo_db, 7)
    graph = compute_graph(run, ids, ci_threshold=meta["ci_threshold"])
    mlp = graph.layers.index("h.0.mlp.c_fc")
    alive_at = graph.node_pos[graph.node_layer == mlp]
    components = graph.node_component[graph.node_layer == mlp]
    # A component that first fires mid-prompt, and where it first fires.
    first = {int(c): int(alive_at[components == c].min()) for c in np.unique(components)}
    middle = len(ids) // 2
    component, start = min(first.items(), key=lambda item: (abs(item[1] - middle), item[0]))
    assert 0 < start < len(ids) - 1
    key = f"h.0.mlp.c_fc:{component}"
    for positions in (None, [start]):
        more = {} if positions is None else {"positions": positions}
        body = intervene(http, {"token_ids": ids}, "ablate", [key], **more)
        for effect in body["positions"][:start]:  # before it fires: untouched, exactly
            assert effect["intervened"] == effect["spd"]
            assert effect["delta_logprob_top"] == 0 and effect["delta_logprob_next"] == 0
        changed = [abs(e["delta_logprob_top"]) > 0 for e in body["positions"]]
        assert changed[start], "ablating a firing component changes its own position"
        assert body["intervention"] == {"mode": "ablate", "components": [key], **more} | (
            {"positions": None} if positions is None else {}
        )


# ---- POST /api/interventions/search ----------------------------------------------------------


def search_lines(http: httpx.Client, request: dict[str, Any]) -> list[dict[str, Any]]:
    with http.stream("POST", "/api/interventions/search", json=request) as response:
        assert response.status_code == 200, response.read().decode()
        assert response.headers["content-type"].startswith("application/x-ndjson")
        return [json.loads(line) for line in response.iter_lines() if line]


def frequent_key(http: httpx.Client) -> str:
    """A component of layer 0's MLP firing in many prompts: ablating it matters."""
    components = http.get("/api/components", params={"limit": 1000}).json()["items"]
    return next(c["key"] for c in components if c["key"].startswith("h.0.mlp.c_fc:"))


def test_search_intervention_equals_single_interventions(http: httpx.Client) -> None:
    key = frequent_key(http)
    intervention = {"mode": "ablate", "components": [key]}
    lines = search_lines(
        http, {"search": {"components": [key]}, "intervention": intervention, "limit": 12}
    )
    start, *prompts, done = lines
    search = http.get("/api/search", params={"components": key, "limit": 12}).json()
    assert start == {
        "type": "start", "total": len(search["results"]), "matching": search["count"],
        "unknown_components": [],
    }  # fmt: skip
    assert [p["prompt_id"] for p in prompts] == [r["id"] for r in search["results"]]
    assert [p["done"] for p in prompts] == list(range(1, len(prompts) + 1))
    for line, result in zip(prompts, search["results"], strict=True):
        assert line["type"] == "prompt" and line["positions"] == result["matches"][key]["positions"]
        single = intervene(http, {"prompt_id": line["prompt_id"]}, "ablate", [key])["positions"]
        n = len(single)
        nexts = [single[p]["delta_logprob_next"] for p in line["positions"] if p < n - 1]
        tops = [single[p]["delta_logprob_top"] for p in line["positions"]]
        if nexts:
            assert line["mean_delta_logprob_next"] == pytest.approx(np.mean(nexts), abs=1e-5)
            assert line["worst_delta_logprob_next"] == pytest.approx(min(nexts), abs=1e-5)
        else:
            assert line["mean_delta_logprob_next"] is None
        assert line["mean_delta_logprob_top"] == pytest.approx(np.mean(tops), abs=1e-5)
        assert line["worst_delta_logprob_top"] == pytest.approx(min(tops), abs=1e-5)
        changed = any(
            single[p]["spd"][0]["token_id"] != single[p]["intervened"][0]["token_id"]
            for p in line["positions"]
        )
        assert line["top1_changed"] == changed
        assert line["n_tokens"] == n
    assert done["type"] == "done"
    aggregate = done["aggregate"]
    means = [
        p["mean_delta_logprob_next"] for p in prompts if p["mean_delta_logprob_next"] is not None
    ]
    assert aggregate["n_prompts"] == len(prompts)
    assert aggregate["mean_delta_logprob_next"]["mean"] == pytest.approx(np.mean(means))
    assert aggregate["mean_delta_logprob_next"]["p50"] == pytest.approx(np.median(means))
    assert aggregate["mean_delta_logprob_next"]["min"] == pytest.approx(min(means))
    assert aggregate["share_top1_changed"] == pytest.approx(
        np.mean([p["top1_changed"] for p in prompts])
    )
    assert any(p["mean_delta_logprob_top"] != 0 for p in prompts), "the ablation did something"


def test_search_with_no_match_streams_an_empty_aggregate(http: httpx.Client) -> None:
    lines = search_lines(
        http,
        {
            "search": {"components": ["h.0.mlp.c_fc:127", "h.9.nothing:1"], "mode": "all"},
            "intervention": {"mode": "ablate", "components": []},
        },
    )
    assert [line["type"] for line in lines] == ["start", "done"]
    assert lines[0]["total"] == 0 and lines[0]["unknown_components"] == ["h.9.nothing:1"]
    assert lines[1]["aggregate"]["n_prompts"] == 0


# ---- under load ---------------------------------------------------------------------------------


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def texts(n: int, offset: int) -> list[str]:
    words = ["ball", "dog", "cat", "red", "big", "mia", "tom", "the", "a", "park"]
    rng = np.random.default_rng(offset)
    return [" ".join(rng.choice(words, size=24)) for _ in range(n)]


def test_32_concurrent_graph_requests_get_200(http: httpx.Client, model_url: str) -> None:
    def post(text: str) -> int:
        with httpx.Client(base_url=model_url, timeout=120) as client:
            return client.post("/api/graphs", json={"text": text, "top_k": 200}).status_code

    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(post, texts(32, 0)))
    assert statuses == [200] * 32  # the default queue holds 32 waiting requests


@pytest.fixture(scope="module")
def small_server(demo_db: str) -> Iterator[str]:
    """A server with a queue of 2 and a cache of a few graphs."""
    settings = Settings(db=demo_db, model="demo", compute_queue=2, graph_cache_bytes=1_000_000)
    with running_server(settings) as url:
        yield url


def test_a_full_queue_answers_503_and_memory_stays_bounded(small_server: str) -> None:
    def post(text: str) -> httpx.Response:
        with httpx.Client(base_url=small_server, timeout=120) as client:
            return client.post("/api/graphs", json={"text": text, "top_k": 200})

    def burst(offset: int) -> list[httpx.Response]:
        with ThreadPoolExecutor(32) as pool:
            return list(pool.map(post, texts(32, offset)))

    burst(100)  # warm: the first graphs allocate what later ones reuse
    before = rss_bytes()
    responses = [r for offset in (1, 2, 3, 4) for r in burst(offset)]
    grown = rss_bytes() - before
    statuses = {r.status_code for r in responses}
    assert statuses == {200, 503}, statuses
    busy = [r for r in responses if r.status_code == 503]
    assert all(int(r.headers["Retry-After"]) >= 1 for r in busy)
    assert all(r.json()["error"] == "model_busy" for r in busy)
    info = httpx.get(f"{small_server}/api/model").json()["model"]
    assert 0 < info["cache_bytes"] <= info["cache_max_bytes"] == 1_000_000
    assert info["waiting"] == 0
    assert grown < 150 << 20, f"the server grew by {grown >> 20} MB over 128 requests"


def test_clients_that_disconnect_leave_the_queue(demo_db: str) -> None:
    """40 clients give up after 0.3 s on 64-token graphs (~0.1 s each or more): the server
    computes the one in progress, not the queued ones."""
    from locattr.demo import demo_prompts

    with running_server(Settings(db=demo_db, model="demo")) as url:

        def post(ids: list[int]) -> bool:
            """Whether the client gave up (the first few may be answered in time)."""
            try:
                httpx.post(f"{url}/api/graphs", json={"token_ids": ids, "top_k": 10}, timeout=0.3)
            except httpx.TimeoutException:
                return True
            return False

        with ThreadPoolExecutor(40) as pool:
            gave_up = sum(pool.map(post, demo_prompts(40, 64, seed=3)))
        assert gave_up >= 30
        for _ in range(100):
            info = httpx.get(f"{url}/api/model").json()["model"]
            if info["waiting"] == 0:
                break
            threading.Event().wait(0.1)
        threading.Event().wait(1.0)  # what is computing finishes
        info = httpx.get(f"{url}/api/model").json()["model"]
    assert info["waiting"] == 0
    assert info["cache_entries"] <= 10, f"{info['cache_entries']} of 40 abandoned graphs computed"


def test_queue_refuses_beyond_its_bound_and_drops_work_of_clients_gone() -> None:
    import asyncio

    from locattr.api.model import (
        ClientGoneError,
        ComputeBusyError,
        ComputeQueue,
        ComputeTimeoutError,
    )

    async def scenario() -> list[str]:
        queue = ComputeQueue(max_waiting=1, timeout_s=30)
        release = threading.Event()
        ran: list[str] = []

        def slow() -> str:
            release.wait(10)
            ran.append("slow")
            return "slow"

        first = asyncio.create_task(queue.run(slow, deadline=queue.deadline()))
        await asyncio.sleep(0.05)  # `first` holds the model
        gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queued = asyncio.create_task(
            queue.run(lambda: ran.append("dropped"), deadline=queue.deadline(), gone=lambda: gone)
        )
        await asyncio.sleep(0.05)
        with pytest.raises(ComputeBusyError) as busy:
            await queue.run(lambda: ran.append("refused"), deadline=queue.deadline())
        assert busy.value.retry_after_s >= 1
        gone.set_result(None)  # the queued client disconnects
        with pytest.raises(ClientGoneError):
            await queued
        with pytest.raises(ComputeTimeoutError):
            await queue.run(lambda: ran.append("late"), deadline=queue.deadline() - 30)
        release.set()
        assert await first == "slow"
        assert await queue.run(lambda: "next", deadline=queue.deadline()) == "next"
        return ran

    assert asyncio.run(scenario()) == ["slow"]


def test_graph_cache_is_bounded_in_bytes_least_recent_first() -> None:
    from locattr.api.model import GraphCache, graph_bytes
    from tests.graphs import THREE_EDGE_GRAPH

    size = graph_bytes(THREE_EDGE_GRAPH)
    cache = GraphCache(max_bytes=2 * size)
    cache.put("a", THREE_EDGE_GRAPH)
    cache.put("b", THREE_EDGE_GRAPH)
    assert cache.get("a") is THREE_EDGE_GRAPH  # now b is the least recent
    cache.put("c", THREE_EDGE_GRAPH)
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert cache.size_bytes == 2 * size and len(cache) == 2
    GraphCache(max_bytes=size - 1).put("x", THREE_EDGE_GRAPH)  # too big: not kept, no error


# ---- bad input ----------------------------------------------------------------------------------

LONG = " ".join(["dog"] * (N_CTX * 3))
BAD_GRAPHS: list[tuple[object, int, str]] = [
    ({"text": ""}, 422, "at least 1 character"),
    ({"text": "   "}, 422, "no tokens"),
    ({"text": LONG}, 422, "context of 64"),
    ({"token_ids": [100_000]}, 422, "vocabulary"),
    ({"token_ids": [-1]}, 422, "greater than or equal to 0"),
    ({"token_ids": []}, 422, "at least 1 item"),
    ({}, 422, "`text` or `token_ids`"),
    ({"text": "dog", "token_ids": [3]}, 422, "token_ids"),
    ({"text": "dog", "top_k": 0}, 422, "top_k"),
    ({"text": "dog", "ci_threshold": 0}, 422, "ci_threshold"),
    ({"text": "dog", "normalize": "l3"}, 422, "normalize"),
    ("not json", 422, "JSON"),
    (["dog"], 422, "`text` or `token_ids`"),
]
INTERVENTION = {"mode": "ablate", "components": ["h.0.mlp.c_fc:3"]}
BAD_INTERVENTIONS: list[tuple[object, int, str]] = [
    ({"text": "dog", "intervention": {**INTERVENTION, "components": ["nocolon"]}}, 422,
     "malformed component key"),
    ({"text": "dog", "intervention": {**INTERVENTION, "components": ["h.9.mlp.c_fc:1"]}}, 422,
     "no layer 'h.9.mlp.c_fc'"),
    ({"text": "dog", "intervention": {**INTERVENTION, "components": ["h.0.mlp.c_fc:128"]}}, 422,
     "128 components"),
    ({"text": "dog", "intervention": {**INTERVENTION, "components": ["wte:0"]}}, 422,
     "not a component"),
    ({"text": "dog cat", "intervention": {**INTERVENTION, "positions": [2]}}, 422,
     "position 2 is past the prompt's 2 tokens"),
    ({"text": "dog", "intervention": {**INTERVENTION, "positions": [-1]}}, 422, "positions"),
    ({"prompt_id": 999_999, "intervention": INTERVENTION}, 404, "no prompt 999999"),
    ({"text": "dog", "intervention": {**INTERVENTION, "mode": "zap"}}, 422, "mode"),
    ({"text": "dog", "intervention": {**INTERVENTION, "components": ["h.0.mlp.c_fc:1"] * 2049}},
     422, "at most 2048"),
    ({"text": "dog"}, 422, "intervention"),
    ({"text": "dog", "intervention": INTERVENTION, "top_k": 51}, 422, "top_k"),
    ({"token_ids": [1] * 65, "intervention": INTERVENTION}, 422, "context of 64"),
]  # fmt: skip
BAD_SEARCHES: list[tuple[object, int, str]] = [
    ({"search": {"components": []}, "intervention": INTERVENTION}, 422, "at least 1 item"),
    ({"search": {"components": ["x"]}, "intervention": INTERVENTION}, 422,
     "malformed component key"),
    ({"search": {"components": ["h.0.mlp.c_fc:3"], "mode": "any", "same_position": True},
      "intervention": INTERVENTION}, 422, "same_position"),
    ({"search": {"components": ["h.0.mlp.c_fc:3"]},
      "intervention": {**INTERVENTION, "components": ["h.0.mlp.c_fc:999"]}}, 422,
     "128 components"),
    ({"search": {"components": ["h.0.mlp.c_fc:3"]}, "intervention": INTERVENTION, "limit": 0},
     422, "limit"),
]  # fmt: skip


def assert_one_sentence(response: httpx.Response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert fragment in body["detail"], body["detail"]
    assert "\n" not in body["detail"] and "Traceback" not in body["detail"]


@pytest.mark.parametrize(("body", "status", "fragment"), BAD_GRAPHS)
def test_bad_graph_requests_get_one_sentence(
    http: httpx.Client, body: object, status: int, fragment: str
) -> None:
    sent = body if isinstance(body, str) else json.dumps(body)
    headers = {"content-type": "application/json"}
    assert_one_sentence(http.post("/api/graphs", content=sent, headers=headers), status, fragment)


@pytest.mark.parametrize(("body", "status", "fragment"), BAD_INTERVENTIONS)
def test_bad_interventions_get_one_sentence(
    http: httpx.Client, body: object, status: int, fragment: str
) -> None:
    assert_one_sentence(http.post("/api/interventions", json=body), status, fragment)


@pytest.mark.parametrize(("body", "status", "fragment"), BAD_SEARCHES)
def test_bad_searches_get_one_sentence(
    http: httpx.Client, body: object, status: int, fragment: str
) -> None:
    assert_one_sentence(http.post("/api/interventions/search", json=body), status, fragment)


def test_a_body_too_long_is_refused_before_it_is_read(http: httpx.Client) -> None:
    huge = json.dumps({"text": "dog " * 3_000_000})
    response = http.post("/api/graphs", content=huge, headers={"content-type": "application/json"})
    assert_one_sentence(response, 413, "longer than")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(100):
            yield b" " * 100_000

    chunked = http.post(
        "/api/graphs", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_one_sentence(chunked, 413, "longer than")


# ---- without a model ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/graphs", {"text": "dog"}),
        ("/api/interventions", {"text": "dog", "intervention": INTERVENTION}),
        ("/api/interventions/search",
         {"search": {"components": ["h.0.mlp.c_fc:3"]}, "intervention": INTERVENTION}),
    ],
)  # fmt: skip
def test_without_a_model_the_endpoints_answer_409(
    client: httpx.Client, path: str, body: dict[str, Any]
) -> None:
    response = client.post(path, json=body)
    assert_one_sentence(response, 409, "start the server with --model")
    assert response.json()["error"] == "no_model"
    assert client.get("/api/model").json() == {"model": None}


def test_model_info(http: httpx.Client) -> None:
    info = http.get("/api/model").json()["model"]
    assert info["run"] == "demo" and info["device"] == "cpu"
    assert (info["n_ctx"], info["vocab_size"]) == (64, 151)
    assert [layer["name"] for layer in info["layers"]][:2] == ["h.0.attn.q_proj", "h.0.attn.k_proj"]
    assert info["queue_limit"] == 64 and info["max_keys"] == 2048


def test_every_body_the_schema_allows_fits_the_body_limit() -> None:
    from locattr.api.settings import MAX_BODY_BYTES, MAX_INTERVENTION_KEYS, MAX_TEXT_CHARS
    from locattr.storage.keys import MAX_KEY_CHARS

    escaped = 6  # bytes of a character written as \uXXXX
    longest = (MAX_INTERVENTION_KEYS + 1) * (escaped * MAX_KEY_CHARS + 3)
    assert longest + escaped * MAX_TEXT_CHARS + 10_000 < MAX_BODY_BYTES


def test_importing_the_api_imports_no_torch() -> None:
    probe = "import locattr.api, sys; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_database_stays_read_only(http: httpx.Client, demo_db: str) -> None:
    before = {p: p.stat().st_mtime_ns for p in Path(demo_db).parent.iterdir()}
    http.post("/api/graphs", json={"text": "the dog and the cat"})
    intervene(http, {"text": "the dog and the cat"}, "ablate", ["h.0.mlp.c_fc:3"])
    after = {p: p.stat().st_mtime_ns for p in Path(demo_db).parent.iterdir()}
    assert after == before


# ---- the command line ---------------------------------------------------------------------------

LOCATTR = str(Path(sys.executable).with_name("locattr"))


def test_serve_refuses_a_model_that_is_not_a_run(demo_db: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [LOCATTR, "serve", "--db", demo_db, "--model", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not exist" in lines[0], result.stderr


def test_serve_with_model(demo_db: str) -> None:
    from tests.api.server import free_port

    port = free_port()
    server = subprocess.Popen(
        [LOCATTR, "serve", "--db", demo_db, "--model", "demo", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    info: dict[str, Any] = {}
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(240):
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            try:
                info = httpx.get(f"{url}/api/model", timeout=2).json()
                break
            except httpx.TransportError:
                threading.Event().wait(0.25)
        assert info["model"]["run"] == "demo"
        graph = httpx.post(f"{url}/api/graphs", json={"text": TEXT, "top_k": 5}, timeout=60)
        assert graph.status_code == 200 and len(graph.json()["edges"]) == 5
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "loading model demo on cpu" in output
