"""Corpus attributions and edge search in the browser: a node card's "across the corpus" lists
against the partners endpoint, and prompts with an edge listed from a clicked edge or a card's
edge row, opened, and restored from the address bar."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any, TypedDict

from playwright.sync_api import Page, Request, expect

from locattr.api.settings import Settings
from tests.api.server import running_server
from tests.frontend.conftest import Console, built_frontend
from tests.frontend.test_browser import (
    PSEUDO_LAYERS,
    component_nodes,
    open_app,
    pin,
    wait_for_prompt,
)
from tests.frontend.test_corpus_ui import api, pinned_keys

SEARCH_PAGE = 20  # the search panel's page size (frontend/src/limits.ts)
CORPUS_PARTNERS = 8  # partners listed per direction in a card (frontend/src/limits.ts)
EDGE_FLOOR = 0.3  # the demo database's edge index floor (the default)


class ShownEdge(TypedDict):
    edge: int
    value: float
    source: str
    target: str
    components: bool
    x: float
    y: float


def shown_ids(page: Page) -> list[int]:
    return page.get_by_test_id("search-result").evaluate_all(
        "els => els.map(e => Number(e.dataset.promptId))"
    )


def edge_hits(app_url: str, source: str, target: str, limit: int) -> dict[str, Any]:
    return api(app_url, "/api/search/edges", source=source, target=target, limit=limit)


def expect_edge_results(page: Page, app_url: str, source: str, target: str) -> dict[str, Any]:
    """The search panel lists the API's first page of prompts with the edge, marked."""
    expected = edge_hits(app_url, source, target, SEARCH_PAGE)
    status = page.get_by_test_id("search-status")
    expect(status).to_contain_text(f"{expected['total']} prompt")
    expect(status).to_contain_text("with this edge")
    expect(page.get_by_test_id("edge-source-chip")).to_contain_text(source)
    expect(page.get_by_test_id("edge-target-chip")).to_contain_text(target)
    assert shown_ids(page) == [hit["id"] for hit in expected["results"]]
    first = expected["results"][0]
    marks = page.get_by_test_id("search-result").first.locator("mark")
    roles = dict(marks.evaluate_all("els => els.map(e => [Number(e.dataset.pos), e.dataset.role])"))
    if first["source_position"] == first["target_position"]:
        assert roles == {first["source_position"]: "both"}
    else:
        assert roles == {first["source_position"]: "source", first["target_position"]: "target"}
    return expected


def test_the_card_lists_corpus_partners_and_pins_one(page: Page, app_url: str) -> None:
    open_app(page, app_url, "?prompt=1")
    partners: dict[str, list[dict[str, Any]]] = {}
    node = None
    for candidate in component_nodes(page):  # one with partners both ways (a middle layer)
        partners = {
            direction: api(
                app_url,
                f"/api/components/{candidate['key']}/partners",
                direction=direction,
                limit=CORPUS_PARTNERS,
            )["items"]
            for direction in ("upstream", "downstream")
        }
        if all(partners.values()):
            node = candidate
            break
    assert node is not None, "no component of prompt 1 has partners both ways"
    page.mouse.click(node["x"], node["y"])
    card = page.get_by_test_id("selected-card")
    for direction, items in partners.items():
        rows = card.get_by_test_id(f"corpus-{direction}").get_by_test_id("corpus-item")
        expect(rows).to_have_count(len(items))
        shown = rows.evaluate_all(
            "els => els.map(e => [e.dataset.key, Number(e.dataset.total), Number(e.dataset.count)])"
        )
        assert shown == [[p["key"], p["total"], p["prompt_count"]] for p in items]
        sign = "negative" if items[0]["total"] < 0 else "positive"
        expect(rows.first.locator(".value")).to_have_class(re.compile(sign))

    partner = partners["downstream"][0]["key"]
    card.get_by_test_id("corpus-downstream").locator(
        f'[data-testid="corpus-item"][data-key="{partner}"]'
    ).get_by_test_id("corpus-pin").click()
    expect(page.get_by_test_id("pinned-item")).to_have_count(1)
    assert pinned_keys(page) == [partner]

    # a partner's prompt count lists the prompts with the edge between the two
    source = partners["upstream"][0]["key"]
    card.get_by_test_id("corpus-upstream").get_by_test_id("corpus-edge-search").first.click()
    page.wait_for_url(re.compile(rf"edge={re.escape(source)},{re.escape(node['key'])}"))
    expect_edge_results(page, app_url, source, node["key"])

    # a partner's key shows it: selected here when it is in this graph
    here = {n["key"] for n in component_nodes(page)}
    shown_partner = next((p["key"] for p in partners["upstream"] if p["key"] in here), None)
    if shown_partner is not None:
        card.get_by_test_id("corpus-upstream").locator(
            f'[data-testid="corpus-item"][data-key="{shown_partner}"]'
        ).get_by_test_id("corpus-show").click()
        page.wait_for_url(re.compile(rf"node={re.escape(shown_partner)}@\d+"))


def test_a_clicked_edge_lists_the_prompts_with_it(page: Page, app_url: str) -> None:
    open_app(page, app_url, "?prompt=1")
    pinned = component_nodes(page)[0]
    pin(page, pinned)
    edges: list[ShownEdge] = page.evaluate("window.locattr.shownEdges(400)")
    edge = next(e for e in edges if e["components"] and abs(e["value"]) >= EDGE_FLOOR)
    assert edge["source"].split(":")[0] not in PSEUDO_LAYERS
    page.mouse.move(edge["x"], edge["y"])
    expect(page.get_by_test_id("edge-card")).to_contain_text("prompts with this edge")
    page.mouse.click(edge["x"], edge["y"])
    page.wait_for_url(re.compile(rf"edge={re.escape(edge['source'])},{re.escape(edge['target'])}"))
    expected = expect_edge_results(page, app_url, edge["source"], edge["target"])
    assert 1 in shown_ids(page) or expected["total"] > SEARCH_PAGE  # prompt 1 has the edge

    if expected["next_cursor"] is not None:
        page.get_by_test_id("search-more").click()
        more = edge_hits(app_url, edge["source"], edge["target"], 2 * SEARCH_PAGE)
        expect(page.get_by_test_id("search-result")).to_have_count(len(more["results"]))
        assert shown_ids(page) == [hit["id"] for hit in more["results"]]

    # opening a result keeps the pins and selects the edge's target where the edge is
    first = expected["results"][0]
    page.get_by_test_id("search-result").first.click()
    wait_for_prompt(page, first["id"])
    page.wait_for_url(re.compile(rf"node={re.escape(edge['target'])}@{first['target_position']}"))
    assert pinned_keys(page) == [pinned["key"]]
    expect(page.get_by_test_id("selected-card")).to_contain_text(edge["target"].split(":")[0])


def test_an_edge_search_from_the_card_survives_a_reload(page: Page, app_url: str) -> None:
    open_app(page, app_url, "?prompt=2")
    graph = api(app_url, "/api/prompt/2")
    nodes = graph["nodes"]
    strongest = max(
        (
            e
            for e in graph["edges"]
            if nodes[e["source"]]["layer"] not in PSEUDO_LAYERS
            and nodes[e["target"]]["layer"] not in PSEUDO_LAYERS
        ),
        key=lambda e: abs(e["value"]),
    )
    assert abs(strongest["value"]) >= EDGE_FLOOR
    source, target = (
        f"{nodes[strongest[end]]['layer']}:{nodes[strongest[end]]['component']}"
        for end in ("source", "target")
    )
    at = nodes[strongest["target"]]
    node = next(n for n in component_nodes(page) if n["key"] == target and n["pos"] == at["pos"])
    page.mouse.click(node["x"], node["y"])
    page.get_by_test_id("selected-card").locator(
        f'[data-testid="edge-search"][data-source="{source}"][data-target="{target}"]'
    ).first.click()
    page.wait_for_url(re.compile(rf"edge={re.escape(source)},{re.escape(target)}"))
    expected = expect_edge_results(page, app_url, source, target)
    assert 2 in shown_ids(page) or expected["total"] > SEARCH_PAGE

    page.reload()
    page.wait_for_function("window.locattr && window.locattr.shownNodes().length > 0")
    expect(page.get_by_test_id("search-result")).to_have_count(len(expected["results"]))
    expect_edge_results(page, app_url, source, target)
    assert re.search(rf"node={re.escape(target)}@{at['pos']}", page.url)

    page.get_by_test_id("edge-search-clear").click()
    expect(page.get_by_test_id("search-result")).to_have_count(0)
    assert "edge=" not in page.url
    page.go_back()  # the edge search was a history entry: back restores it
    expect(page.get_by_test_id("search-result")).to_have_count(len(expected["results"]))


def test_stale_corpus_tables_are_one_sentence_and_asked_once(
    page: Page, demo_db: Path, tmp_path: Path, console: Console
) -> None:
    stale = tmp_path / "stale.db"
    shutil.copy(demo_db, stale)
    with sqlite3.connect(stale) as connection:
        connection.execute(
            "INSERT INTO meta (key, value) VALUES ('corpus_tables_stale', ?)",
            (json.dumps("prompts added after the last aggregate"),),
        )
    asked: list[str] = []

    def on_request(request: Request) -> None:
        if "/partners" in request.url:
            asked.append(request.url)

    page.on("request", on_request)
    with running_server(Settings(db=str(stale), frontend_dir=built_frontend())) as url:
        open_app(page, url, "?prompt=1")
        nodes = component_nodes(page)
        second = next(n for n in nodes if n["key"] != nodes[0]["key"])
        status = page.get_by_test_id("selected-card").get_by_test_id("corpus-status")
        for node in (nodes[0], second):
            page.mouse.click(node["x"], node["y"])
            page.wait_for_url(re.compile(rf"node={re.escape(node['key'])}@{node['pos']}"))
            expect(status).to_have_text(re.compile("out of date.*locattr db aggregate"))
    assert len(asked) == 2  # the first card's two directions; the second card asks nothing
    console.allow("409")
