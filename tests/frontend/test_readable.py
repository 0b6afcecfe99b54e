"""A readable graph: the prompt, input and output rows, values on hover, traces, layout limits,
exports and URL state, in real Chromium against the real API and a generated demo database."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, TypedDict

import httpx
from playwright.sync_api import Page, expect

from locattr import LocalAttrDB
from tests.frontend.conftest import N_CTX, N_PROMPTS, Console
from tests.frontend.test_browser import (
    PSEUDO_LAYERS,
    ShownNode,
    component_nodes,
    node_with_context,
    open_app,
    shown_nodes,
    wait_for_prompt,
)


class ShownEdge(TypedDict):
    edge: int
    value: float
    x: float
    y: float


def shown_edges(page: Page) -> list[ShownEdge]:
    return page.evaluate("window.locattr.shownEdges(300)")


def graph(app_url: str, prompt_id: int, **params: Any) -> dict[str, Any]:
    response = httpx.get(f"{app_url}/api/prompt/{prompt_id}", params=params, timeout=30)
    response.raise_for_status()
    return response.json()


def visible_token(token: str) -> str:
    """As the page shows a token: a leading space as a dot, newlines and tabs as arrows."""
    shown = token.replace("\n", "↵").replace("\t", "→")
    return "·" + shown[1:] if shown.startswith(" ") else shown


def test_stored_graphs_have_input_and_output_nodes(app_url: str, demo_db: Path) -> None:
    body = graph(app_url, 1, top_k=100_000)
    layers = {n["layer"] for n in body["nodes"]}
    assert {"wte", "output"} <= layers
    outputs = [n for n in body["nodes"] if n["layer"] == "output"]
    assert all(0.01 <= n["ci"] <= 1 for n in outputs)  # probabilities at the default threshold
    assert {n["pos"] for n in body["nodes"] if n["layer"] == "wte"} <= set(range(N_CTX))
    # the predicted tokens' text, from the vocabulary the build stored
    with LocalAttrDB(demo_db, readonly=True) as db:
        vocabulary = db.get_vocabulary()
    assert vocabulary is not None
    ids = {n["component"] for n in outputs}
    assert body["output_tokens"] == {str(i): vocabulary[i] for i in ids}
    assert "vocabulary" not in httpx.get(f"{app_url}/api/meta", timeout=30).json()["meta"]


def test_prompt_text_and_every_token_label_read_in_full_at_1280(page: Page, app_url: str) -> None:
    page.set_viewport_size({"width": 1280, "height": 800})
    open_app(page, app_url, "?prompt=1")
    tokens = graph(app_url, 1)["tokens"]
    assert len(tokens) == N_CTX
    text = page.get_by_test_id("prompt-text")
    expect(text).to_contain_text("".join(tokens).strip()[:40])
    expect(text.locator(".ptok")).to_have_count(len(tokens))
    labels = [a for a in page.evaluate("window.locattr.axisLabels()") if a["axis"] == "input"]
    assert [a["pos"] for a in labels] == list(range(N_CTX)), "a token label was skipped"
    assert all(a["full"] for a in labels), [a for a in labels if not a["full"]]
    assert [a["text"] for a in labels] == [visible_token(t) for t in tokens]
    outputs = [a for a in page.evaluate("window.locattr.axisLabels()") if a["axis"] == "output"]
    assert outputs and all(a["full"] for a in outputs)
    assert all(re.search(r" (0|1)\.\d\d$", a["text"]) for a in outputs)  # token and probability


def test_clicking_a_token_focuses_its_position(page: Page, app_url: str) -> None:
    open_app(page, app_url, "?prompt=1")
    page.get_by_test_id("prompt-text").locator('.ptok[data-pos="5"]').click()
    page.wait_for_url(re.compile(r"focus=5"))
    expect(page.get_by_test_id("prompt-text").locator(".ptok.focused")).to_have_attribute(
        "data-pos", "5"
    )
    page.keyboard.press("Escape")
    page.wait_for_url(lambda url: "focus=" not in url)


def test_hovering_an_edge_shows_its_value(page: Page, app_url: str) -> None:
    open_app(page, app_url, "?prompt=1")
    edges = shown_edges(page)
    assert edges, "no edge could be hovered apart from the nodes"
    edge = edges[0]
    page.mouse.move(edge["x"], edge["y"])
    card = page.get_by_test_id("edge-card")
    expect(card).to_be_visible()
    expect(page.get_by_test_id("node-card")).to_be_hidden()
    value = edge["value"]
    expect(card).to_contain_text(f"{value:.4f}" if abs(value) >= 1e-4 else f"{value:.1e}")
    expect(card.get_by_test_id("edge-source")).not_to_be_empty()
    expect(card.get_by_test_id("edge-target")).not_to_be_empty()
    page.mouse.move(2, 2)
    expect(card).to_be_hidden()


def test_node_card_lists_edges_and_a_click_moves_along_one(page: Page, app_url: str) -> None:
    open_app(page, app_url, "?prompt=1")
    body = graph(app_url, 1)
    node = node_with_context(page, app_url)
    page.mouse.move(node["x"], node["y"])
    hover_edges = page.get_by_test_id("node-card").get_by_test_id("node-edges")
    expect(hover_edges).to_be_visible()
    page.mouse.click(node["x"], node["y"])
    page.wait_for_url(re.compile(rf"node={re.escape(node['key'])}@{node['pos']}"))
    selected = page.get_by_test_id("selected-card")
    expect(selected).to_be_visible()
    items = selected.get_by_test_id("node-edges").locator(".edge-item")
    expect(items.first).to_be_visible()
    # the listed values are this node's strongest edges in the loaded graph, signed
    index = next(
        i
        for i, n in enumerate(body["nodes"])
        if f"{n['layer']}:{n['component']}" == node["key"] and n["pos"] == node["pos"]
    )
    touching = [e for e in body["edges"] if index in (e["source"], e["target"])]
    strongest = max(abs(e["value"]) for e in touching)
    listed = [float(v) for v in items.evaluate_all("els => els.map(e => e.dataset.value)")]
    assert max(abs(v) for v in listed) == strongest
    other = int(items.first.get_attribute("data-node") or -1)
    target = body["nodes"][other]
    items.first.click()
    page.wait_for_url(
        re.compile(rf"node={re.escape(target['layer'])}:{target['component']}@{target['pos']}")
    )


def test_legend_explains_colours(page: Page, app_url: str) -> None:
    open_app(page, app_url, "?prompt=1")
    legend = page.get_by_test_id("legend")
    expect(legend).to_be_visible()
    for words in ("positive", "negative", "|value|", "CI", "input", "prediction"):
        expect(legend).to_contain_text(words)


def test_a_trace_narrows_the_graph_and_lives_in_the_url(page: Page, app_url: str) -> None:
    open_app(page, app_url, "?prompt=1")
    before = len(shown_nodes(page))
    top = max(component_nodes(page), key=lambda n: -n["y"])  # a node in a late layer
    page.mouse.click(top["x"], top["y"])
    page.get_by_test_id("trace-up").click()
    page.wait_for_url(re.compile("trace=up"))
    page.wait_for_function("n => window.locattr.shownNodes().length < n", arg=before)
    traced = shown_nodes(page)
    assert 1 <= len(traced) < before
    root = next(n for n in traced if n["key"] == top["key"] and n["pos"] == top["pos"])
    assert all(n["y"] >= root["y"] - 1 for n in traced)  # upstream: nothing above the node
    assert all(n["pos"] <= root["pos"] for n in traced)  # nor at a later position
    expect(page.get_by_test_id("edge-count")).to_contain_text("trace")
    page.reload()
    page.wait_for_function("window.locattr && window.locattr.shownNodes().length > 0")
    assert len(shown_nodes(page)) == len(traced)


def test_a_card_near_the_bottom_right_corner_stays_inside_the_window(
    page: Page, app_url: str
) -> None:
    page.set_viewport_size({"width": 1280, "height": 800})
    open_app(page, app_url, "?prompt=2")
    corner = max(component_nodes(page), key=lambda n: n["x"] + n["y"])
    page.mouse.move(corner["x"], corner["y"])
    card = page.get_by_test_id("node-card")
    expect(card.locator(".stats")).to_be_visible()  # statistics arrived: the card is full size
    page.wait_for_timeout(100)
    box = card.bounding_box()
    assert box is not None
    assert box["x"] >= 0 and box["y"] >= 0
    assert box["x"] + box["width"] <= 1280 and box["y"] + box["height"] <= 800


def test_svg_export_parses_and_holds_every_token(page: Page, app_url: str, tmp_path: Path) -> None:
    open_app(page, app_url, "?prompt=3")
    with page.expect_download() as download:
        page.get_by_test_id("export-svg").click()
    path = tmp_path / "graph.svg"
    download.value.save_as(path)
    root = ET.parse(path).getroot()
    texts = ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]
    tokens = graph(app_url, 3)["tokens"]
    assert "".join(tokens).strip()[:30] in " ".join(texts)  # the prompt as title
    for token in tokens:
        assert visible_token(token) in texts, token
    assert any("positive" in t for t in texts)  # the legend
    with page.expect_download() as png:
        page.get_by_test_id("export-png").click()
    png_path = tmp_path / "graph.png"
    png.value.save_as(png_path)
    width = int.from_bytes(png_path.read_bytes()[16:20], "big")
    assert width == 2 * int(float(root.get("width") or 0))  # twice the SVG's size


def test_file_mode_shows_statistics_for_an_unpinned_never_hovered_node(
    page: Page, app_url: str, tmp_path: Path
) -> None:
    open_app(page, app_url, "?prompt=4&pinned=h.0.mlp.c_fc:0")
    with page.expect_download() as download:
        page.get_by_test_id("export-json").click()
    exported = tmp_path / "graph.json"
    download.value.save_as(exported)
    file = json.loads(exported.read_text())
    keys = {f"{n['layer']}:{n['component']}" for n in file["nodes"]}
    components = {k for k in keys if k.rsplit(":", 1)[0] not in PSEUDO_LAYERS}
    assert set(file["components"]) == components  # a card for every component

    page.get_by_test_id("mode-file").click()
    assert "prompt=" not in page.url and "pinned=" not in page.url  # database state cleared
    page.get_by_test_id("file-input").set_input_files(exported)
    page.wait_for_function("window.locattr.shownNodes().length > 0")
    node: ShownNode = next(n for n in component_nodes(page) if n["key"] != "h.0.mlp.c_fc:0")
    page.mouse.move(node["x"], node["y"])
    card = page.get_by_test_id("node-card")
    expect(card.locator(".stats")).to_be_visible()
    expect(card).to_contain_text("prompts")
    expect(card).not_to_contain_text("no statistics")


def test_url_state_prompt_beyond_the_first_page_missing_prompts_and_bad_pins(
    page: Page, app_url: str, console: Console
) -> None:
    assert N_PROMPTS > 50
    open_app(page, app_url, f"?prompt={N_PROMPTS - 2}")
    item = page.locator(f'[data-testid="prompt-item"][data-prompt-id="{N_PROMPTS - 2}"]')
    expect(item).to_have_class(re.compile("active"))
    expect(item).to_be_in_viewport()
    expect(page.get_by_test_id("search-more")).to_be_hidden()  # no search, no "More results"

    page.goto(f"{app_url}/?prompt=9999")
    status = page.get_by_test_id("graph-status")
    expect(status).to_contain_text("Prompt 9999 is not in this database")
    expect(status).not_to_contain_text("File")
    console.allow("/api/prompt/9999")

    page.goto(f"{app_url}/?prompt=1&pinned=h.0.mlp.c_fc:1,not-a-key")
    problems = page.get_by_test_id("url-problems")
    expect(problems).to_be_visible()
    expect(problems).to_contain_text("not-a-key")
    expect(page.get_by_test_id("pinned-item")).to_have_count(1)


def test_usable_at_1024x700_with_collapsible_panels(page: Page, app_url: str) -> None:
    page.set_viewport_size({"width": 1024, "height": 700})
    open_app(page, app_url, "?prompt=1")
    canvas = page.get_by_test_id("graph-canvas")
    box = canvas.bounding_box()
    assert box is not None and box["height"] >= 330 and box["width"] >= 450, box
    page.get_by_test_id("toggle-left").click()
    expect(page.get_by_test_id("prompt-list")).to_be_hidden()
    page.wait_for_timeout(200)
    wider = canvas.bounding_box()
    assert wider is not None and wider["width"] > box["width"] + 150
    page.get_by_test_id("toggle-left").click()
    expect(page.get_by_test_id("prompt-list")).to_be_visible()


def test_zoom_stays_on_the_graph(page: Page, app_url: str) -> None:
    open_app(page, app_url, "?prompt=1")
    box = page.get_by_test_id("graph-canvas").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] - 5, box["y"] + 5)  # the empty top-right corner
    for _ in range(6):
        page.mouse.wheel(0, -300)
        page.wait_for_timeout(50)
    page.wait_for_timeout(300)
    inside = [
        n
        for n in shown_nodes(page)
        if box["x"] <= n["x"] <= box["x"] + box["width"]
        and box["y"] <= n["y"] <= box["y"] + box["height"]
    ]
    assert inside, "zoomed into empty space"
    for _ in range(20):
        page.mouse.wheel(0, 400)  # zooming out stops at the fit
    page.wait_for_timeout(300)
    page.get_by_test_id("reset-view").click()
    fitted = shown_nodes(page)
    page.mouse.wheel(0, 400)
    page.wait_for_timeout(300)
    assert shown_nodes(page)[0]["x"] == fitted[0]["x"]


def test_the_prompt_id_in_the_url_is_followed_back(page: Page, app_url: str) -> None:
    open_app(page, app_url, "?prompt=1")
    page.locator('[data-testid="prompt-item"][data-prompt-id="2"]').click()
    wait_for_prompt(page, 2)
    page.go_back()
    wait_for_prompt(page, 1)
