"""Every endpoint over real HTTP against a real SQLite database."""

import http.client
import json
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from locattr import LocalAttrDB
from locattr.api import schemas
from locattr.api.settings import Settings
from tests.api.conftest import A, B, C, fill
from tests.api.server import running_server


def test_health_meta_layers(client: httpx.Client) -> None:
    assert client.get("/api/health").json() == {"status": "ok", "prompt_count": 3}
    meta = client.get("/api/meta").json()
    assert meta["prompt_count"] == 3 and meta["meta"]["run"] == "test-run"
    assert [layer["name"] for layer in meta["layers"]] == [
        "h.0.mlp.c_fc",
        "h.0.mlp.down_proj",
        "h.1.attn.o_proj",
    ]
    assert client.get("/api/layers").json()[2] == {"name": "h.1.attn.o_proj", "n_components": 4}


def test_prompt_list_pages(client: httpx.Client) -> None:
    first = client.get("/api/prompts", params={"limit": 2}).json()
    assert [p["id"] for p in first["items"]] == [1, 2] and first["count"] == 3
    assert first["items"][0]["preview"] == "Once upon a"
    rest = client.get("/api/prompts", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [p["id"] for p in rest["items"]] == [3] and rest["next_cursor"] is None
    # a page may start at a given id (the frontend opens a prompt beyond its first page)
    started = client.get("/api/prompts", params={"limit": 1, "start": 2}).json()
    assert [p["id"] for p in started["items"]] == [2] and started["count"] == 3
    after = client.get("/api/prompts", params={"limit": 1, "cursor": started["next_cursor"]})
    assert [p["id"] for p in after.json()["items"]] == [3]


def test_prompt_graph_pruning(client: httpx.Client) -> None:
    full = client.get("/api/prompt/1").json()
    assert full["tokens"] == ["Once", " upon", " a"] and full["source"] == {
        "dataset": "t",
        "index": 0,
    }
    assert [e["value"] for e in full["edges"]] == [0.75, -0.5, 0.25]  # strongest first
    assert full["n_edges_total"] == 3 and full["n_edges_dropped"] == 0
    strongest = full["edges"][0]
    assert full["nodes"][strongest["source"]] == {
        "layer": "h.0.mlp.down_proj",
        "pos": 1,
        "component": 5,
        "ci": 0.5,
    }
    top = client.get("/api/prompt/1", params={"top_k": 1}).json()
    assert len(top["edges"]) == 1 and top["n_edges_dropped"] == 2 and len(top["nodes"]) == 2
    weak_cut = client.get("/api/prompt/1", params={"min_abs": 0.3}).json()
    assert [e["value"] for e in weak_cut["edges"]] == [0.75, -0.5]
    # o_proj:2 receives 0.25 and 0.75: L1-normalised to 0.25 and 0.75, L2 to 0.316 and 0.949
    l1 = client.get("/api/prompt/1", params={"normalize": "l1_target"}).json()
    assert sorted(round(e["value"], 3) for e in l1["edges"]) == [-1.0, 0.25, 0.75]
    l2 = client.get("/api/prompt/1", params={"normalize": "l2_target"}).json()
    assert sorted(round(e["value"], 3) for e in l2["edges"]) == [-1.0, 0.316, 0.949]
    only = client.get("/api/prompt/1", params={"layers": "h.0.mlp.c_fc,h.0.mlp.down_proj"}).json()
    assert [e["value"] for e in only["edges"]] == [-0.5]
    empty = client.get("/api/prompt/3").json()
    assert empty["edges"] == [] and empty["n_nodes_total"] == 1


def test_search(client: httpx.Client) -> None:
    both = client.get("/api/search", params={"components": f"{A},{B}"}).json()
    assert (
        [r["id"] for r in both["results"]] == [1, 2]
        and both["count"] == 2
        and both["mode"] == "all"
    )
    assert both["results"][0]["matches"][A] == {"max_ci": 0.75, "positions": [0, 1], "ci_sum": 1.25}
    # specificity: CI sums x ln(1 + 3 prompts / 2 prompts where A, and B, fire)
    assert both["rank"] == "specificity" and both["idf"] == pytest.approx(
        {A: 0.9163, B: 0.9163}, 1e-4
    )
    assert [r["score"] for r in both["results"]] == pytest.approx([1.75 * 0.91629, 0.5 * 0.91629])
    assert both["results"][0]["preview"] == "Once upon a"
    assert both["results"][0]["tokens"] == ["Once", " upon", " a"]  # what positions index
    anyof = client.get("/api/search", params={"components": f"{A},{C}", "mode": "any"}).json()
    assert [r["id"] for r in anyof["results"]] == [3, 1, 2]
    paged = client.get("/api/search", params={"components": A, "limit": 1}).json()
    rest = client.get(
        "/api/search", params={"components": A, "limit": 1, "cursor": paged["next_cursor"]}
    ).json()
    assert [r["id"] for r in paged["results"] + rest["results"]] == [1, 2]
    unknown = client.get(
        "/api/search", params={"components": f"{A},h.9.mlp:1", "mode": "any"}
    ).json()
    assert unknown["unknown_components"] == ["h.9.mlp:1"] and unknown["count"] == 2


def test_search_exclusion_and_ranking(client: httpx.Client) -> None:
    def found(**params: str | float) -> list[int]:
        body = client.get("/api/search", params=params).json()
        assert body["count"] == len(body["results"])
        return [r["id"] for r in body["results"]]

    assert found(components=f"{A},{C}", mode="any", exclude=B) == [3]
    assert found(components=f"{A},{C}", mode="any", exclude=f"{B},{B}") == [3]
    assert found(components=A, exclude=C) == [1, 2]
    assert found(components=A, exclude="h.1.attn.o_proj:2") == [2]
    # o_proj:2 (0.25 in prompt 1) does not fire at min_ci 0.3, nor does A in prompt 2
    assert found(components=A, exclude="h.1.attn.o_proj:2", min_ci=0.3) == [1]
    body = client.get("/api/search", params={"components": A, "exclude": f"{C},h.9.mlp:1"}).json()
    assert body["exclude"] == [C, "h.9.mlp:1"] and body["unknown_components"] == ["h.9.mlp:1"]
    by_max_ci = client.get("/api/search", params={"components": f"{A},{B}", "rank": "max_ci"})
    assert [r["score"] for r in by_max_ci.json()["results"]] == [1.25, 0.5]
    assert by_max_ci.json()["rank"] == "max_ci" and by_max_ci.json()["idf"] == {}
    emptied = client.get("/api/search", params={"components": f"{A},{B}", "exclude": f"{C},{B}"})
    assert emptied.status_code == 422
    assert emptied.json()["detail"] == (
        f"{B} is both searched for and excluded, an exclusion that empties the query: drop it "
        "from one of the two lists"
    )


def test_cofiring(client: httpx.Client) -> None:
    """A and B fire in prompts 1 and 2, o_proj:2 in 1, C in 3: N = 3."""
    body = client.get(f"/api/components/{A}/cofiring", params={"min_count": 1}).json()
    assert (body["key"], body["prompt_count"], body["n_prompts"], body["n_partners"]) == (
        A,
        2,
        3,
        2,
    )
    assert body["items"] == [
        {"key": B, "count": 2, "prompt_count": 2, "lift": 1.5, "jaccard": 1.0},
        {"key": "h.1.attn.o_proj:2", "count": 1, "prompt_count": 1, "lift": 1.5, "jaccard": 0.5},
    ]
    by_default = client.get(f"/api/components/{A}/cofiring").json()  # min_count 3
    assert by_default["items"] == [] and by_default["min_count"] == 3
    one = client.get(f"/api/components/{C}/cofiring", params={"min_count": 1, "limit": 1}).json()
    assert one["items"] == [] and one["prompt_count"] == 1
    jaccard = client.get(
        f"/api/components/{A}/cofiring", params={"min_count": 1, "order": "jaccard", "limit": 1}
    ).json()
    assert [i["key"] for i in jaccard["items"]] == [B] and jaccard["n_partners"] == 2


@pytest.mark.parametrize("key", ["interrupted", "statement timeout", "h.0.mlp.c_fc:interrupted"])
def test_bad_keys_that_read_like_timeouts_are_a_422(client: httpx.Client, key: str) -> None:
    response = client.get("/api/search", params={"components": key})
    assert response.status_code == 422 and response.json()["error"] == "malformed_component_key"


def test_search_filters(client: httpx.Client) -> None:
    strong = client.get("/api/search", params={"components": f"{A},{B}", "min_ci": 0.5}).json()
    assert [r["id"] for r in strong["results"]] == [1]
    together = client.get(
        "/api/search", params={"components": f"{A},{B}", "same_position": "true"}
    ).json()
    assert [r["id"] for r in together["results"]] == [1] and together["count"] == 1
    refused = client.get(
        "/api/search", params={"components": A, "mode": "any", "same_position": "true"}
    )
    assert refused.status_code == 422 and refused.json()["error"] == "invalid_query"


def test_components(client: httpx.Client) -> None:
    listing = client.get("/api/components").json()
    listed = listing["items"]
    assert listing["count"] == len(listed) == 4
    assert [c["key"] for c in listed][:2] == [A, B] and listed[0]["prompt_count"] == 2
    assert [
        c["key"]
        for c in client.get("/api/components", params={"layer": "h.1.attn.o_proj"}).json()["items"]
    ] == [
        "h.1.attn.o_proj:1",
        "h.1.attn.o_proj:2",
    ]
    first = client.get("/api/components", params={"limit": 2}).json()
    rest = client.get("/api/components", params={"limit": 2, "cursor": first["next_cursor"]})
    assert [c["key"] for c in first["items"] + rest.json()["items"]] == [c["key"] for c in listed]
    for sort, value in (("max_ci", "max_max_ci"), ("mean_ci", "mean_ci")):
        # page by page in the order asked for, ties by model order, no mean CI last
        pages, cursor = [], None
        while True:
            params: dict[str, str | int] = {"limit": 1, "sort": sort}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/api/components", params=params).json()
            pages += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        order = sorted(listed, key=lambda c: (-(c[value] if c[value] is not None else -1), 0))
        assert [c[value] for c in pages] == [c[value] for c in order]
        assert sorted(c["key"] for c in pages) == sorted(c["key"] for c in listed)
    refused = client.get(
        "/api/components", params={"sort": "max_ci", "cursor": rest.url.params["cursor"]}
    )
    assert refused.status_code == 422  # a cursor of another order
    detail = client.get(f"/api/components/{A}").json()
    assert detail["prompt_count"] == 2 and detail["top_prompt_ids"] == [1, 2]
    assert detail["cofiring"][0] == {"key": B, "prompts": 2} and detail["cofiring_sample"] == 2
    assert detail["mean_ci"] == 0.125 and detail["activation_context"]["examples"][0]["tokens"] == [
        "Once"
    ]
    contexts = client.get("/api/activation_contexts").json()
    assert contexts["count"] == 1
    assert contexts["items"] == [
        {"key": A, "context": {"mean_ci": 0.125, "examples": [{"tokens": ["Once"], "ci": [0.5]}]}}
    ]


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/api/prompt/999", {}, 404, "not_found"),
        ("/api/prompt/abc", {}, 422, "invalid_parameter"),
        ("/api/components/h.0.mlp.c_fc:99", {}, 404, "not_found"),
        ("/api/components/x:abc", {}, 422, "malformed_component_key"),
        ("/api/search", {"components": "h.0.attn.q_proj"}, 422, "malformed_component_key"),
        ("/api/search", {"components": A, "mode": "most"}, 422, "invalid_parameter"),
        ("/api/search", {"components": A, "cursor": "!!"}, 422, "invalid_cursor"),
        ("/api/search", {"components": ",".join([A] * 100)}, 422, "invalid_query"),
        ("/api/search", {"components": " , "}, 422, "invalid_query"),
        ("/api/search", {"components": A, "exclude": "x:abc"}, 422, "malformed_component_key"),
        ("/api/search", {"components": f"{A},{B}", "exclude": A}, 422, "invalid_query"),
        (
            "/api/search",
            {"components": A, "exclude": ",".join(f"h.0.mlp.c_fc:{i}" for i in range(65))},
            422,
            "invalid_query",
        ),
        ("/api/search", {"components": A, "rank": "sum"}, 422, "invalid_parameter"),
        ("/api/search", {"components": A, "cursor": "s_1.0_2"}, 422, "invalid_cursor"),  # max_ci
        ("/api/components/h.0.mlp.c_fc:99/cofiring", {}, 404, "not_found"),
        ("/api/components/nope:1/cofiring", {}, 404, "not_found"),
        ("/api/components/x:abc/cofiring", {}, 422, "malformed_component_key"),
        (f"/api/components/{A}/cofiring", {"limit": 0}, 422, "invalid_parameter"),
        (f"/api/components/{A}/cofiring", {"limit": 1001}, 422, "invalid_parameter"),
        (f"/api/components/{A}/cofiring", {"min_count": 0}, 422, "invalid_parameter"),
        (f"/api/components/{A}/cofiring", {"min_count": 2**31}, 422, "invalid_parameter"),
        (f"/api/components/{A}/cofiring", {"min_count": "x"}, 422, "invalid_parameter"),
        (f"/api/components/{A}/cofiring", {"order": "size"}, 422, "invalid_parameter"),
        ("/api/prompts", {"limit": -1}, 422, "invalid_parameter"),
        ("/api/prompts", {"limit": 10**9}, 422, "invalid_parameter"),
        ("/api/prompts", {"cursor": "eyJ4Ijox"}, 422, "invalid_cursor"),
        ("/api/nothing-here", {}, 404, "not_found"),
    ],
)
def test_bad_input_is_a_4xx_that_says_why(
    client: httpx.Client, path: str, params: dict[str, object], status: int, code: str
) -> None:
    response = client.get(path, params=params)  # type: ignore[arg-type]
    assert response.status_code == status
    body = response.json()
    assert body["error"] == code and len(body["detail"]) > 10


@pytest.mark.parametrize(("n_keys", "status"), [(1_000, 422), (50_000, 400)])
def test_huge_searches_are_refused_fast(api_url: str, n_keys: int, status: int) -> None:
    """1,000 keys: our limit answers; 50,000 (a 940 kB URL): the HTTP server's limit does."""
    keys = ",".join(f"h.0.mlp.c_fc:{i}" for i in range(n_keys))
    host, port = api_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    start = time.monotonic()
    connection.request("GET", f"/api/search?components={keys}")
    response = connection.getresponse()
    assert response.status == status and time.monotonic() - start < 2
    if status == 422:
        assert json.loads(response.read())["error"] == "invalid_parameter"
    connection.close()


@pytest.mark.parametrize(
    "path",
    [
        "/..%2f..%2fetc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/../../etc/passwd",
        "/static/..%2f..%2fpyproject.toml",
    ],
)
def test_path_traversal_is_a_404(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert "root:" not in response.text and "[project]" not in response.text


def test_original_endpoints_answer_with_original_parameters(client: httpx.Client) -> None:
    """The original's six endpoints, called as its page called them."""
    assert client.get("/api/meta").status_code == 200
    assert client.get("/api/activation_contexts").status_code == 200
    assert client.get("/api/prompts").status_code == 200
    assert client.get("/api/prompt/1").status_code == 200
    assert (
        client.get("/api/search", params={"components": f"{A},{B}", "mode": "all"}).status_code
        == 200
    )
    assert client.get("/api/components").status_code == 200


def test_root_explains_how_to_build_the_frontend(tmp_path: Path) -> None:
    """Without a built frontend (`frontend_dir` empty), `/` says what to do and links the docs."""
    path = str(tmp_path / "served.db")
    with LocalAttrDB(path) as db:
        fill(db)
    settings = Settings(db=path, frontend_dir=tmp_path / "no-frontend")
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        page = client.get("/")
        assert page.status_code == 200 and "/docs" in page.text and "not built" in page.text
        assert (
            client.get("/openapi.json").json()["paths"]["/api/search"]["get"]["operationId"]
            == "searchPrompts"
        )


def test_gzip_for_large_responses(client: httpx.Client) -> None:
    response = client.get("/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert response.headers.get("content-encoding") == "gzip"


@pytest.mark.parametrize(
    "params",
    [
        {"components": f"{A},{B}"},
        {"components": f"{A},h.9.mlp:1", "mode": "any", "limit": 1},
        {"components": f"{A},{B}", "min_ci": 0.5, "same_position": "true"},
        {"components": "h.9.mlp:1"},
        {"components": f"{A},{C}", "mode": "any", "exclude": f"{B},h.9.mlp:2", "rank": "max_ci"},
        {"components": f"{A},h.9.mlp:1", "exclude": "h.9.mlp:2"},
    ],
)
def test_search_body_is_exactly_its_schema(client: httpx.Client, params: dict[str, str]) -> None:
    """The search body is built by hand for speed: no field missing, extra or mistyped."""
    response = client.get("/api/search", params=params)
    parsed = schemas.SearchResults.model_validate_json(response.content, strict=True)
    assert parsed.model_dump(mode="json") == response.json()


@pytest.mark.parametrize(
    "query", ["/api/prompt/1", "/api/prompt/1?top_k=1&normalize=l2_target", "/api/prompt/3"]
)
def test_graph_body_is_exactly_its_schema(client: httpx.Client, query: str) -> None:
    """The graph body is built by hand for speed: no field missing, extra or mistyped."""
    response = client.get(query)
    parsed = schemas.PromptGraph.model_validate_json(response.content, strict=True)
    assert parsed.model_dump(mode="json") == response.json()


def test_a_damaged_graph_blob_is_a_clear_error(tmp_path: Path) -> None:
    """A blob that fails its checks answers with the codec's message, not a traceback."""
    path = tmp_path / "served.db"
    with LocalAttrDB(path) as db:
        fill(db)
    connection = sqlite3.connect(path)
    damaged = bytearray(connection.execute("SELECT graph FROM prompts WHERE id = 1").fetchone()[0])
    damaged[-5] ^= 0x55  # inside the last column's zstd frame, before its checksum
    with connection:
        connection.execute("UPDATE prompts SET graph = ? WHERE id = 1", (bytes(damaged),))
    connection.close()
    with running_server(Settings(db=str(path))) as url, httpx.Client(base_url=url) as client:
        response = client.get("/api/prompt/1")
        body = response.json()
        assert response.status_code == 503  # the stored data, not the request, is at fault
        assert body["error"] == "corrupt_graph" and body["detail"].startswith(
            "corrupt graph blob: edge_value frame:"
        )
        assert client.get("/api/prompt/2").status_code == 200


def test_activation_contexts_of_one_layer_count_that_layer(tmp_path: Path) -> None:
    path = str(tmp_path / "contexts.db")
    with LocalAttrDB(path) as db:
        fill(db)  # a context for A
        db.set_activation_contexts({B: {"mean_ci": 0.25}, C: {"mean_ci": 0.5}})
    with running_server(Settings(db=path)) as url, httpx.Client(base_url=url) as http:
        every = http.get("/api/activation_contexts").json()
        one = http.get("/api/activation_contexts", params={"layer": "h.1.attn.o_proj"}).json()
        unknown = http.get("/api/activation_contexts", params={"layer": "h.9.mlp"}).json()
    assert every["count"] == 3 and len(every["items"]) == 3
    assert one["count"] == 1 and [item["key"] for item in one["items"]] == [C]
    assert (unknown["count"], unknown["items"]) == (0, [])
