"""Corpus questions in the browser: pin by typing a key, the component browser, excluded pins,
per-component colours in result previews, and co-firing partners pinned from a card."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.frontend.conftest import Console
from tests.frontend.test_browser import component_nodes, open_app


def api(app_url: str, path: str, **params: Any) -> dict[str, Any]:
    response = httpx.get(f"{app_url}{path}", params=params, timeout=30)
    response.raise_for_status()
    return response.json()


def pinned_keys(page: Page) -> list[str]:
    return page.get_by_test_id("pinned-item").evaluate_all("els => els.map(e => e.dataset.key)")


def test_pin_by_typing_a_key_and_the_component_browser(
    page: Page, app_url: str, console: Console
) -> None:
    open_app(page, app_url, "?prompt=1")
    page.get_by_test_id("tab-components").click()
    listed = api(app_url, "/api/components", limit=50, sort="max_ci")["items"]
    page.get_by_test_id("component-sort").select_option("max_ci")
    items = page.get_by_test_id("component-item")
    expect(items.first).to_have_attribute("data-key", listed[0]["key"])
    expect(items).to_have_count(len(listed))

    key = listed[3]["key"]
    page.get_by_test_id("component-key").fill(key)
    page.get_by_test_id("pin-key").click()
    expect(page.get_by_test_id("pinned-item")).to_have_count(1)
    assert pinned_keys(page) == [key]
    page.wait_for_url(re.compile(f"pinned={re.escape(key)}"))

    for bad, says in (
        ("not a key", "not a component key"),
        ("h.0.mlp.c_fc:99999", "not a component"),
    ):
        page.get_by_test_id("component-key").fill(bad)
        page.get_by_test_id("pin-key").click()
        expect(page.get_by_test_id("component-key-status")).to_contain_text(says)
    assert pinned_keys(page) == [key]
    console.allow("h.0.mlp.c_fc%3A99999")

    layer = listed[0]["layer"]
    page.get_by_test_id("component-layer").select_option(layer)
    in_layer = [
        c["key"]
        for c in api(app_url, "/api/components", limit=50, layer=layer, sort="max_ci")["items"]
    ]
    assert in_layer and in_layer != [c["key"] for c in listed]  # the filter changes the list
    page.wait_for_function(
        """keys => JSON.stringify([...document.querySelectorAll('[data-testid="component-item"]')]
            .map(e => e.dataset.key)) === JSON.stringify(keys)""",
        arg=in_layer,
    )


def test_excluded_pins_leave_their_prompts_out(page: Page, app_url: str) -> None:
    graph = api(app_url, "/api/prompt/1")
    keys = list(
        dict.fromkeys(
            f"{n['layer']}:{n['component']}"
            for n in graph["nodes"]
            if n["layer"] not in ("wte", "output")
        )
    )
    # a component to require and one to exclude that still leaves some prompts
    wanted = keys[0]
    with_wanted = {
        r["id"] for r in api(app_url, "/api/search", components=wanted, limit=1000)["results"]
    }
    excluded, expected = None, set()
    for other in keys[1:]:
        both = {
            r["id"]
            for r in api(app_url, "/api/search", components=f"{wanted},{other}", limit=1000)[
                "results"
            ]
        }
        if 0 < len(both) < len(with_wanted):
            excluded, expected = other, with_wanted - both
            break
    assert excluded is not None, "no component splits the prompts of the first"
    open_app(page, app_url, f"?prompt=1&pinned={wanted},{excluded}")
    page.locator(f'[data-testid="pinned-item"][data-key="{excluded}"]').get_by_test_id(
        "exclude-pin"
    ).click()
    page.wait_for_url(re.compile(f"excluded={re.escape(excluded)}"))
    expect(page.get_by_test_id("search-button")).to_contain_text("without 1")
    page.get_by_test_id("search-button").click()
    expect(page.get_by_test_id("search-status")).to_contain_text(f"{len(expected)} prompt")
    expect(page.get_by_test_id("search-status")).to_contain_text("none of 1 excluded")
    shown = page.get_by_test_id("search-result").evaluate_all(
        "els => els.map(e => Number(e.dataset.promptId))"
    )
    assert set(shown) <= expected and len(shown) == min(len(expected), 20)
    marks = page.get_by_test_id("search-results").locator("mark")
    assert set(marks.evaluate_all("els => els.map(e => e.dataset.key)")) == {wanted}


def test_previews_colour_each_queried_component(page: Page, app_url: str) -> None:
    graph = api(app_url, "/api/prompt/2")
    keys = list(
        dict.fromkeys(
            f"{n['layer']}:{n['component']}"
            for n in graph["nodes"]
            if n["layer"] not in ("wte", "output") and n["pos"] > 0
        )
    )[:2]
    open_app(page, app_url, f"?prompt=2&pinned={','.join(keys)}")
    page.get_by_test_id("search-mode").select_option("any")
    page.get_by_test_id("search-button").click()
    expect(page.get_by_test_id("match-colours").locator(".chip")).to_have_count(2)
    marks = page.get_by_test_id("search-results").locator("mark")
    expect(marks.first).to_be_visible()
    colours = dict(
        marks.evaluate_all(
            "els => els.map(e => [e.dataset.key, getComputedStyle(e).backgroundColor])"
        )
    )
    assert set(colours) == set(keys) and len(set(colours.values())) == 2


def test_a_cofiring_partner_is_pinned_from_the_card(page: Page, app_url: str) -> None:
    open_app(page, app_url, "?prompt=1")
    node = component_nodes(page)[0]
    page.mouse.click(node["x"], node["y"])
    card = page.get_by_test_id("selected-card")
    partners = card.get_by_test_id("cofiring-item")
    expect(partners.first).to_be_visible()
    expected = api(app_url, f"/api/components/{node['key']}/cofiring", limit=8)["items"]
    assert partners.evaluate_all("els => els.map(e => e.dataset.key)") == [
        p["key"] for p in expected
    ]
    partner = expected[0]["key"]
    card.locator(f'[data-testid="cofiring-item"][data-key="{partner}"]').get_by_test_id(
        "cofiring-pin"
    ).click()
    expect(page.get_by_test_id("pinned-item")).to_have_count(1)
    assert pinned_keys(page) == [partner]
    # "prompts where this fires" from the card searches for it alone
    card.get_by_test_id("find-prompts").click()
    expect(page.get_by_test_id("search-status")).to_contain_text("with all of 1 component")


def test_the_share_filter_hides_components_that_fire_almost_everywhere(
    page: Page, app_url: str
) -> None:
    open_app(page, app_url, "?prompt=5")
    graph = api(app_url, "/api/prompt/5")
    n_prompts = api(app_url, "/api/meta")["prompt_count"]
    counts, nodes = graph["prompt_counts"], graph["nodes"]
    assert counts and n_prompts > 0

    def passes(node: dict[str, Any]) -> bool:
        key = f"{node['layer']}:{node['component']}"
        return key not in counts or counts[key] / n_prompts <= 0.5

    expected = sum(
        passes(nodes[e["source"]]) and passes(nodes[e["target"]]) for e in graph["edges"]
    )
    assert 0 < expected < len(graph["edges"])
    control = page.get_by_test_id("max-share")
    control.fill("0.5")
    control.press("Tab")
    page.wait_for_url(re.compile("max_share=0.5"))
    page.wait_for_function(
        "n => document.querySelector('[data-testid=edge-count]').dataset.shown === String(n)",
        arg=expected,
    )
