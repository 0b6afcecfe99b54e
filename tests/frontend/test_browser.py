"""The page in real Chromium against the real API and a generated demo database."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.frontend.conftest import N_PROMPTS, built_frontend

PROMPT_PAGE = 50  # the prompt list's page size (frontend/src/limits.ts)
PSEUDO_LAYERS = ("wte", "output")


class ShownNode(TypedDict):
    key: str
    layer: str
    pos: int
    x: float
    y: float


def open_app(page: Page, url: str, query: str = "") -> None:
    page.goto(f"{url}/{query}")
    page.wait_for_function("window.locattr && window.locattr.shownNodes().length > 0")


def shown_nodes(page: Page) -> list[ShownNode]:
    return page.evaluate("window.locattr.shownNodes()")


def component_nodes(page: Page) -> list[ShownNode]:
    """Shown nodes of decomposed layers (not the input and output rows)."""
    return [n for n in shown_nodes(page) if n["layer"] not in PSEUDO_LAYERS]


def pin(page: Page, node: ShownNode) -> None:
    """Shift-click pins a node's component (a plain click selects the node)."""
    page.keyboard.down("Shift")
    page.mouse.click(node["x"], node["y"])
    page.keyboard.up("Shift")


def edges_shown(page: Page) -> int:
    return int(page.get_by_test_id("edge-count").get_attribute("data-shown") or -1)


def current_prompt(page: Page) -> int | None:
    match = re.search(r"[?&]prompt=(\d+)", page.url)
    return int(match.group(1)) if match else None


def wait_for_prompt(page: Page, prompt_id: int) -> None:
    """The prompt is in the address bar and its graph is drawn."""
    page.wait_for_url(re.compile(rf"[?&]prompt={prompt_id}(&|$)"))
    expect(page.get_by_test_id("graph-status")).to_be_hidden()
    page.wait_for_function("window.locattr.shownNodes().length > 0")


def component(app_url: str, key: str) -> dict[str, Any]:
    response = httpx.get(f"{app_url}/api/components/{key}", timeout=30)
    response.raise_for_status()
    return response.json()


def node_with_context(page: Page, app_url: str) -> ShownNode:
    """A shown node whose component has a stored activation context with examples."""
    seen: set[str] = set()
    for node in component_nodes(page):
        if node["key"] in seen:
            continue
        seen.add(node["key"])
        context = component(app_url, node["key"])["activation_context"]
        if context and context.get("example_tokens"):
            return node
        assert len(seen) < 60, "no shown component has an activation context"
    raise AssertionError("no shown node")


def test_prompt_list_fills_and_the_graph_is_drawn(page: Page, app_url: str) -> None:
    open_app(page, app_url)
    expect(page.get_by_test_id("prompt-item")).to_have_count(min(N_PROMPTS, PROMPT_PAGE))
    expect(page.get_by_test_id("prompt-list")).to_contain_text("#1")
    assert current_prompt(page) == 1  # the first prompt opens by itself
    expect(page.get_by_test_id("edge-count")).to_contain_text(re.compile(r"Showing [\d,]+ of"))
    assert edges_shown(page) > 0
    inked = page.evaluate(
        """() => {
            const canvas = document.querySelector('[data-testid="graph-canvas"]');
            const { width, height } = canvas;
            // the plot area only: right of the layer labels, above the token labels
            const plot = canvas.getContext("2d").getImageData(160, 0, width - 160, height - 50);
            const data = plot.data;
            let inked = 0;
            for (let i = 0; i < data.length; i += 4) {
                if (data[i] < 200 || data[i + 1] < 200 || data[i + 2] < 200) inked++;
            }
            return inked;
        }"""
    )
    assert inked > 500, f"only {inked} coloured pixels in the plot area"
    expect(page.get_by_test_id("mode-db")).to_have_attribute("aria-pressed", "true")


def test_hover_shows_the_node_card_with_activation_context(page: Page, app_url: str) -> None:
    open_app(page, app_url)
    node = node_with_context(page, app_url)
    page.mouse.move(node["x"], node["y"])
    card = page.get_by_test_id("node-card")
    expect(card).to_be_visible()
    layer, index = node["key"].rsplit(":", 1)
    expect(card).to_contain_text(layer)
    expect(card).to_contain_text(f"#{index}")
    expect(card).to_contain_text("CI here")
    expect(card).to_contain_text("prompts")
    expect(card.get_by_test_id("context-example").first).to_be_visible()
    expect(card.locator(".tok.firing").first).to_be_visible()
    expect(card).to_contain_text("Input tokens")
    expect(card).to_contain_text("Predicted tokens")
    page.mouse.move(5, 5)
    expect(card).to_be_hidden()


def test_shift_click_pins_and_the_pin_survives_a_prompt_switch(page: Page, app_url: str) -> None:
    open_app(page, app_url, "?prompt=1")
    node = component_nodes(page)[0]
    pin(page, node)
    pinned = page.get_by_test_id("pinned-item")
    expect(pinned).to_have_count(1)
    expect(pinned).to_have_attribute("data-key", node["key"])
    page.wait_for_url(re.compile(f"pinned={re.escape(node['key'])}"))
    page.locator('[data-testid="prompt-item"][data-prompt-id="2"]').click()
    wait_for_prompt(page, 2)
    expect(pinned).to_have_count(1)
    expect(pinned).to_have_attribute("data-key", node["key"])
    assert f"pinned={node['key']}" in page.url
    page.get_by_test_id("unpin").click()
    expect(pinned).to_have_count(0)
    assert "pinned=" not in page.url


def test_search_finds_the_current_prompt_and_arrows_step_through(page: Page, app_url: str) -> None:
    open_app(page, app_url, "?prompt=1")
    node = component_nodes(page)[0]
    pin(page, node)
    page.get_by_test_id("search-rank").select_option("max_ci")  # ties by prompt id: 1 is first
    page.get_by_test_id("search-button").click()
    results = page.get_by_test_id("search-results")
    mine = results.locator('[data-testid="search-result"][data-prompt-id="1"]')
    expect(mine).to_have_count(1)
    expect(mine.locator("mark").first).to_be_visible()  # the matching positions, marked
    expect(page.get_by_test_id("search-status")).to_contain_text("with all of 1 component")
    ids = [
        int(i)
        for i in results.get_by_test_id("search-result").evaluate_all(
            "items => items.map(item => item.dataset.promptId)"
        )
    ]
    assert ids and 1 in ids
    if len(ids) > 1:
        other = ids[0] if ids[0] != 1 else ids[1]
        results.locator(f'[data-testid="search-result"][data-prompt-id="{other}"]').click()
        wait_for_prompt(page, other)
        page.mouse.move(5, 5)
        page.keyboard.press("ArrowRight" if ids.index(other) + 1 < len(ids) else "ArrowLeft")
        step = ids.index(other) + (1 if ids.index(other) + 1 < len(ids) else -1)
        wait_for_prompt(page, ids[step])
    expect(page.get_by_test_id("pinned-item")).to_have_attribute("data-key", node["key"])


def test_a_url_with_pins_restores_them(page: Page, app_url: str) -> None:
    graph = httpx.get(f"{app_url}/api/prompt/3", timeout=30).json()
    keys = list(
        dict.fromkeys(
            f"{n['layer']}:{n['component']}"
            for n in graph["nodes"]
            if n["layer"] not in PSEUDO_LAYERS
        )
    )[:2]
    open_app(page, app_url, f"?prompt=3&pinned={','.join(keys)}")
    pinned = page.get_by_test_id("pinned-item")
    expect(pinned).to_have_count(2)
    assert pinned.evaluate_all("items => items.map(item => item.dataset.key)") == keys
    expect(page.locator('[data-testid="prompt-item"][data-prompt-id="3"]')).to_have_class(
        re.compile("active")
    )


def set_control(page: Page, testid: str, value: str) -> None:
    control = page.get_by_test_id(testid)
    control.fill(value)
    control.press("Tab")


def wait_for_edges(page: Page, count: int) -> None:
    page.wait_for_function(
        "n => document.querySelector('[data-testid=edge-count]').dataset.shown === String(n)",
        arg=count,
    )


def test_controls_prune_the_graph(page: Page, app_url: str) -> None:
    open_app(page, app_url, "?prompt=1")
    assert edges_shown(page) > 40
    set_control(page, "top-k", "40")
    page.wait_for_url(re.compile("top_k=40"))
    wait_for_edges(page, 40)

    graph = httpx.get(f"{app_url}/api/prompt/1", params={"top_k": 40}, timeout=30).json()
    nodes, edges, mean_ci = graph["nodes"], graph["edges"], graph["mean_ci"]

    def kept(passes: Callable[[dict[str, Any]], bool]) -> int:
        """How many of the 40 edges join two nodes that pass (inputs and outputs always do)."""

        def ok(node: dict[str, Any]) -> bool:
            return node["layer"] in PSEUDO_LAYERS or passes(node)

        return sum(ok(nodes[e["source"]]) and ok(nodes[e["target"]]) for e in edges)

    set_control(page, "ci-threshold", "0.5")
    wait_for_edges(page, kept(lambda n: n["ci"] >= 0.5))
    set_control(page, "ci-threshold", "0")
    threshold = sorted(mean_ci.values())[len(mean_ci) // 2]
    set_control(page, "max-mean-ci", str(threshold))
    expected = kept(lambda n: mean_ci.get(f"{n['layer']}:{n['component']}", 0) <= threshold)
    assert 0 < expected < 40
    wait_for_edges(page, expected)


def test_file_mode_opens_an_exported_graph_without_the_server(
    page: Page, app_url: str, tmp_path: Path
) -> None:
    open_app(page, app_url, "?prompt=2")
    node = node_with_context(page, app_url)
    page.mouse.move(node["x"], node["y"])  # fetches its details, which the export then carries
    expect(page.get_by_test_id("node-card").get_by_test_id("context-example").first).to_be_visible()
    shown = edges_shown(page)
    with page.expect_download() as download:
        page.get_by_test_id("export-json").click()
    exported = tmp_path / "graph.json"
    download.value.save_as(exported)

    api_calls: list[str] = []
    page.on("request", lambda r: api_calls.append(r.url) if "/api/" in r.url else None)
    page.get_by_test_id("mode-file").click()
    expect(page.get_by_test_id("mode-file")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_test_id("prompt-list")).to_be_hidden()
    page.get_by_test_id("file-input").set_input_files(exported)
    page.wait_for_function("window.locattr.shownNodes().length > 0")
    assert edges_shown(page) == shown
    same = next(n for n in shown_nodes(page) if n["key"] == node["key"] and n["pos"] == node["pos"])
    page.mouse.move(same["x"], same["y"])
    card = page.get_by_test_id("node-card")
    expect(card).to_contain_text(node["key"].rsplit(":", 1)[0])
    expect(card.get_by_test_id("context-example").first).to_be_visible()
    with page.expect_download() as png:
        page.get_by_test_id("export-png").click()
    assert png.value.suggested_filename.endswith(".png")
    assert api_calls == []

    # the built page opened straight from disk, with no server at all
    page.goto((built_frontend() / "index.html").as_uri())
    expect(page.get_by_test_id("mode-file")).to_have_attribute("aria-pressed", "true")
    page.get_by_test_id("file-input").set_input_files(exported)
    page.wait_for_function("window.locattr.shownNodes().length > 0")
    assert edges_shown(page) == shown


@pytest.mark.parametrize("prompt_id", [1])
def test_graph_response_carries_dataset_mean_ci(app_url: str, prompt_id: int) -> None:
    graph = httpx.get(f"{app_url}/api/prompt/{prompt_id}", timeout=30).json()
    keys = {f"{n['layer']}:{n['component']}" for n in graph["nodes"]}
    assert graph["mean_ci"] and set(graph["mean_ci"]) <= keys
    key, value = next(iter(graph["mean_ci"].items()))
    assert component(app_url, key)["mean_ci"] == pytest.approx(value)


def spread(nodes: list[ShownNode]) -> float:
    return max(n["x"] for n in nodes) - min(n["x"] for n in nodes)


def test_wheel_zooms_and_drag_pans(page: Page, app_url: str) -> None:
    open_app(page, app_url, "?prompt=1")
    box = page.get_by_test_id("graph-canvas").bounding_box()
    assert box is not None
    centre_x, centre_y = box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5
    before = shown_nodes(page)
    page.mouse.move(centre_x, centre_y)
    page.mouse.wheel(0, -400)
    page.wait_for_timeout(300)
    zoomed = shown_nodes(page)
    assert spread(zoomed) > 1.5 * spread(before)
    page.mouse.down()
    page.mouse.move(centre_x + 120, centre_y + 40, steps=5)
    page.mouse.up()
    page.wait_for_timeout(300)
    panned = shown_nodes(page)
    assert panned[0]["x"] == pytest.approx(zoomed[0]["x"] + 120, abs=1)
    assert panned[0]["y"] == pytest.approx(zoomed[0]["y"] + 40, abs=1)
    expect(page.get_by_test_id("pinned-item")).to_have_count(0)  # a drag is not a click
    page.get_by_test_id("reset-view").click()
    assert shown_nodes(page)[0]["x"] == pytest.approx(before[0]["x"], abs=1)


def test_a_fitted_view_refits_on_resize_a_moved_one_stays(page: Page, app_url: str) -> None:
    page.set_viewport_size({"width": 1000, "height": 700})
    open_app(page, app_url, "?prompt=1")
    before = spread(shown_nodes(page))
    page.set_viewport_size({"width": 1600, "height": 1000})
    page.wait_for_timeout(300)
    wider = spread(shown_nodes(page))
    assert wider > 1.2 * before  # still a fit, so the graph grew with the window
    box = page.get_by_test_id("graph-canvas").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5)
    page.mouse.wheel(0, -400)
    page.wait_for_timeout(300)
    zoomed = shown_nodes(page)
    page.set_viewport_size({"width": 1300, "height": 900})
    page.wait_for_timeout(300)
    assert spread(shown_nodes(page)) == pytest.approx(spread(zoomed), abs=1)  # view kept
