"""/api/component_details: many components in one request, each as /api/components/{key}
answers it, on each backend."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from locattr import LocalAttrDB
from locattr.api.settings import Settings
from locattr.graph import Graph
from locattr.storage import PromptRecord, reads
from tests.api.conftest import A, B, C, fill
from tests.api.server import running_server
from tests.conftest import BACKENDS, create_postgres_database, drop_postgres_database

SILENT = "h.0.mlp.c_fc:0"  # a component of a known layer that fires in no prompt
RECORDS_CONTEXT = {
    "mean_ci": 0.125,
    "examples": [
        {"tokens": ["t", str(i)], "ci": [0.0, 1 - i / 10], "active_pos": 1} for i in range(7)
    ],
}
COLUMNS_CONTEXT = {
    "subcomponent_idx": 5,
    "mean_ci": 0.25,
    "n_firings": 8,
    "example_tokens": [["x", str(i)] for i in range(8)],
    "example_token_ids": [[1, i] for i in range(8)],
    "example_ci": [[0.0, 0.9 - i / 10] for i in range(8)],
    "example_active_pos": [1] * 8,
    "example_active_ci": [0.9 - i / 10 for i in range(8)],
    "pr_tokens": list("abcdefg"),
    "pr_recalls": [0.5] * 7,
    "pr_precisions": [0.25] * 7,
    "predicted_tokens": list("uvwxyz"),
    "predicted_probs": [0.125] * 6,
}
EXAMPLE_COLUMNS = [name for name in COLUMNS_CONTEXT if name.startswith("example_")]


def fill_more(db: LocalAttrDB) -> None:
    """`fill`'s prompts, four more where A fires (with ties), and contexts in both formats."""
    fill(db)
    db.add_prompts(
        [
            PromptRecord(f"q{i}", [i], ["x"], Graph.from_records([("h.0.mlp.c_fc", 0, 3, ci)], []))
            for i, ci in enumerate([0.5, 0.25, 0.5, 0.75])
        ]
    )
    db.set_activation_contexts({A: RECORDS_CONTEXT, B: COLUMNS_CONTEXT})


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    postgres = request.param == "postgres"
    target = (
        create_postgres_database()
        if postgres
        else str(tmp_path_factory.mktemp("details") / "served.db")
    )
    try:
        with LocalAttrDB(target) as db:
            fill_more(db)
        with running_server(Settings(db=target)) as url:
            yield url
    finally:
        if postgres:
            drop_postgres_database(target)


@pytest.fixture
def http(served: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served, timeout=30) as client:
        yield client


def details(http: httpx.Client, keys: list[str], **params: int) -> dict[str, Any]:
    response = http.get("/api/component_details", params={"keys": ",".join(keys), **params})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("top", [20, 2, 1])
def test_each_item_is_the_single_component_answer(http: httpx.Client, top: int) -> None:
    keys = [A, B, C, "h.1.attn.o_proj:2", SILENT]
    body = details(http, [*keys, A, f" {B} "], top=top, examples=20)
    assert [item["key"] for item in body["items"]] == keys and body["unknown_components"] == []
    for item in body["items"]:
        single = http.get(f"/api/components/{item['key']}", params={"top": top}).json()
        assert item["cofiring"] == [] and item["cofiring_sample"] == 0
        del single["cofiring"], single["cofiring_sample"], item["cofiring"], item["cofiring_sample"]
        assert item == single
    by_key = {item["key"]: item for item in body["items"]}
    assert by_key[A]["top_prompt_ids"] == [1, 7, 4, 6, 2, 5][:top]  # ties by prompt id
    assert by_key[A]["activation_context"] == RECORDS_CONTEXT
    assert by_key[C]["activation_context"] is None and by_key[SILENT]["prompt_count"] == 0


def test_no_top_prompts_when_asked_for_none(http: httpx.Client) -> None:
    body = details(http, [A, B], top=0)
    assert [item["top_prompt_ids"] for item in body["items"]] == [[], []]
    assert body["items"][0]["prompt_count"] == 6


@pytest.mark.parametrize("examples", [0, 2, 5, 7])
def test_examples_are_cut_alike_in_either_format(http: httpx.Client, examples: int) -> None:
    params = {"examples": examples} if examples != 5 else {}  # 5 is the default
    a, b = details(http, [A, B], **params)["items"]
    assert a["activation_context"] == {
        "mean_ci": 0.125,
        "examples": RECORDS_CONTEXT["examples"][:examples],
    }
    context = b["activation_context"]
    for name in EXAMPLE_COLUMNS:
        assert context[name] == COLUMNS_CONTEXT[name][:examples], name
    kept = {k: v for k, v in COLUMNS_CONTEXT.items() if k not in EXAMPLE_COLUMNS}
    assert {k: v for k, v in context.items() if k not in EXAMPLE_COLUMNS} == kept


def test_unknown_keys_are_listed_in_the_order_asked(http: httpx.Client) -> None:
    body = details(http, ["h.9.mlp:1", A, "h.1.attn.o_proj:99", "h.9.mlp:1"])
    assert [item["key"] for item in body["items"]] == [A]
    assert body["unknown_components"] == ["h.9.mlp:1", "h.1.attn.o_proj:99"]


def test_five_hundred_long_keys_fit_in_one_request(http: httpx.Client) -> None:
    layer = "model.layers.31.mlp.down_proj"  # longer than this database's layer names
    keys = [A, *(f"{layer}:{100_000 + i}" for i in range(499))]
    assert len(",".join(keys)) > 15_000
    body = details(http, keys, examples=1)
    assert [item["key"] for item in body["items"]] == [A]
    assert body["unknown_components"] == keys[1:]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"keys": "x:abc"}, "malformed_component_key"),
        ({"keys": f"{A},h.0.mlp.c_fc"}, "malformed_component_key"),
        ({"keys": "x:²"}, "malformed_component_key"),  # a digit to isdigit(), not to int()
        ({"keys": f"x:{'9' * 5000}"}, "malformed_component_key"),  # longer than any key
        ({"keys": " , "}, "invalid_query"),
        ({"keys": ",".join(f"h.0.mlp.c_fc:{i}" for i in range(501))}, "invalid_query"),
        ({"keys": ",".join(["h.0.mlp.c_fc:12345"] * 1200)}, "invalid_parameter"),  # too long
        ({"keys": A, "examples": 21}, "invalid_parameter"),
        ({"keys": A, "examples": -1}, "invalid_parameter"),
        ({"keys": A, "top": 101}, "invalid_parameter"),
        ({}, "invalid_parameter"),
    ],
)
def test_bad_requests_are_a_422_that_says_why(
    http: httpx.Client, params: dict[str, object], code: str
) -> None:
    response = http.get("/api/component_details", params=params)  # type: ignore[arg-type]
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == code and 10 < len(body["detail"]) < 500


def test_one_statement_for_any_number_of_keys(db: LocalAttrDB) -> None:
    """Not a query per key (plus one re-read of the layer table when a key names a layer it
    has not seen)."""
    fill_more(db)
    layers = reads.LayerCache()
    keys = [A, B, C, SILENT, *(f"h.0.mlp.down_proj:{i}" for i in range(8))]
    statements: list[str] = []
    with db.engine.connect() as connection:
        layers.slots(connection)
        event.listen(connection, "before_cursor_execute", lambda *a: statements.append(a[2]))
        found, _ = reads.component_details(connection, layers, keys, top_k=20, examples=5)
        assert len(found) == len(set(keys)) and len(statements) == 1, statements
        assert found[0].stats.top_prompt_ids == [1, 7, 4, 6, 2, 5]
        statements.clear()
        found, unknown = reads.component_details(
            connection, layers, [*keys, "h.9.x:1", "h.8.x:1"], top_k=0, examples=5
        )
        assert len(statements) == 2, statements  # the layer table once, then the components
        assert unknown == ["h.9.x:1", "h.8.x:1"] and found[0].stats.top_prompt_ids == []
