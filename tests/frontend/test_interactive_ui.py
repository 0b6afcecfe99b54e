"""Graphs for a typed prompt and interventions in the browser, against a server that holds the
demo model: the prompt box, its address (`?text=`), the intervention table driven by the pins,
the intervention over a search's results, and the page of a server without a model."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import httpx
from playwright.sync_api import Page, expect

from tests.frontend.conftest import Console
from tests.frontend.test_browser import ShownNode, component_nodes, open_app, pin, shown_nodes

# "lily." and "said:" split as the corpus spaces them; "zebra" is not in the demo vocabulary.
TEXT = "once there was a little cat named lily. lily said: where is my zebra"
INTERVENTION_SEARCH = 100  # most prompts an intervention over a search runs on (limits.ts)


def post(url: str, path: str, body: dict[str, Any]) -> Any:
    response = httpx.post(f"{url}{path}", json=body, timeout=60)
    response.raise_for_status()
    return response.json()


def search_events(url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with httpx.stream("POST", f"{url}/api/interventions/search", json=body, timeout=60) as r:
        r.raise_for_status()
        return [json.loads(line) for line in r.iter_lines() if line.strip()]


def type_prompt(page: Page, text: str) -> None:
    box = page.get_by_test_id("own-prompt-input")
    expect(box).to_be_enabled()
    box.fill(text)
    box.press("Enter")


def wait_for_text_graph(page: Page, text: str) -> None:
    """The text is in the address bar, the graph drawn and titled as the typed prompt."""
    page.wait_for_url(re.compile(r"[?&]text=" + re.escape(quote(text, safe=""))))
    expect(page.get_by_test_id("graph-status")).to_be_hidden()
    page.wait_for_function("window.locattr.shownNodes().length > 0")
    expect(page.get_by_test_id("prompt-text")).to_contain_text("your prompt")


def node_set(nodes: list[ShownNode]) -> set[tuple[str, int]]:
    return {(n["key"], n["pos"]) for n in nodes}


def pin_components(page: Page, n: int) -> list[str]:
    """Shift-click `n` different components of the shown graph; returns their keys."""
    keys: list[str] = []
    for node in component_nodes(page):
        if node["key"] in keys:
            continue
        pin(page, node)
        keys.append(node["key"])
        expect(page.get_by_test_id("ablate-pinned")).to_have_text(f"Ablate pinned ({len(keys)})")
        if len(keys) == n:
            return keys
    raise AssertionError(f"the graph shows fewer than {n} components")


def test_a_typed_prompt_shows_its_graph_and_keeps_the_pins(page: Page, model_app_url: str) -> None:
    open_app(page, model_app_url, "?prompt=1")
    [key] = pin_components(page, 1)
    expect(page.get_by_test_id("own-prompt-status")).to_be_hidden()
    type_prompt(page, TEXT)
    wait_for_text_graph(page, TEXT)
    expected = post(model_app_url, "/api/graphs", {"text": TEXT})
    tokens = page.get_by_test_id("prompt-text").locator(".ptok")
    expect(tokens).to_have_count(len(expected["tokens"]))
    assert tokens.all_text_contents() == expected["tokens"]
    # every node drawn is one of the API's, and the graph is not a stored prompt's
    api_nodes = {(f"{n['layer']}:{n['component']}", n["pos"]) for n in expected["nodes"]}
    shown = node_set(shown_nodes(page))
    assert shown and shown <= api_nodes
    assert "prompt=" not in page.url
    assert f"pinned={key}" in page.url
    expect(page.get_by_test_id("pinned-item")).to_have_count(1)
    status = page.get_by_test_id("own-prompt-status")
    expect(status).to_contain_text(f"{len(expected['tokens'])} tokens")
    assert expected["unknown_tokens"] == 1
    expect(status).to_contain_text("1 unknown to the tokenizer")
    # a stored prompt opened from the list replaces the text in the address bar
    page.locator('[data-testid="prompt-item"][data-prompt-id="2"]').click()
    page.wait_for_url(re.compile(r"[?&]prompt=2(&|$)"))
    assert "text=" not in page.url
    page.go_back()
    wait_for_text_graph(page, TEXT)


def test_a_link_with_text_recomputes_the_same_graph(page: Page, model_app_url: str) -> None:
    open_app(page, model_app_url, "?prompt=1")
    type_prompt(page, TEXT)
    wait_for_text_graph(page, TEXT)
    first = node_set(shown_nodes(page))
    link = page.url
    page.reload()
    wait_for_text_graph(page, TEXT)
    assert node_set(shown_nodes(page)) == first
    other = page.context.new_page()
    other.goto(link)
    other.wait_for_function("window.locattr && window.locattr.shownNodes().length > 0")
    assert node_set(shown_nodes(other)) == first
    expect(other.get_by_test_id("own-prompt-input")).to_have_value(TEXT)
    other.close()


def expect_table(page: Page, result: dict[str, Any]) -> None:
    """The table has a row per position, marked where the API says the top-1 token changed."""
    rows = page.get_by_test_id("intervention-row")
    expect(rows).to_have_count(len(result["positions"]))
    changed = [
        p["intervened"][0]["token_id"] != p["spd"][0]["token_id"] for p in result["positions"]
    ]
    shown = rows.evaluate_all("els => els.map(e => e.dataset.top1Changed === 'true')")
    assert shown == changed
    positions = rows.evaluate_all("els => els.map(e => Number(e.dataset.pos))")
    assert positions == list(range(len(result["positions"])))
    expect(page.get_by_test_id("top1-changed")).to_have_count(sum(changed))
    summary = page.get_by_test_id("intervention-summary")
    expect(summary).to_contain_text(
        f"Top-1 token changed at {sum(changed)} of {len(changed)} positions"
    )


def test_ablating_the_pins_shows_the_table_per_position(page: Page, model_app_url: str) -> None:
    open_app(page, model_app_url, f"?text={quote(TEXT)}")
    expect(page.get_by_test_id("intervention-dock")).to_be_visible()
    expect(page.get_by_test_id("ablate-pinned")).to_be_disabled()
    keys = pin_components(page, 3)
    page.get_by_test_id("ablate-pinned").click()
    expected = post(
        model_app_url,
        "/api/interventions",
        {"text": TEXT, "intervention": {"mode": "ablate", "components": keys}, "top_k": 3},
    )
    expect_table(page, expected)
    first = page.get_by_test_id("intervention-row").first
    expect(first.locator("ol.topk").nth(0).locator("li")).to_have_count(3)
    top = expected["positions"][0]["target"][0]["token"]
    expect(first.locator("ol.topk").nth(0).locator("li").first).to_contain_text(top.strip())
    expect(page.get_by_test_id("intervention-summary")).to_contain_text("ablated 3 pinned")
    # a row focuses its position in the graph
    page.get_by_test_id("intervention-row").nth(2).click()
    page.wait_for_url(re.compile(r"[?&]focus=2(&|$)"))
    # keep only the pins, with more tokens listed
    page.get_by_test_id("intervention-top-k").select_option("5")
    page.get_by_test_id("keep-only-pinned").click()
    expect(page.get_by_test_id("keep-only-pinned")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_test_id("intervention-summary")).to_contain_text("kept only 3 pinned")
    kept = post(
        model_app_url,
        "/api/interventions",
        {"text": TEXT, "intervention": {"mode": "keep_only", "components": keys}, "top_k": 5},
    )
    expect_table(page, kept)
    expect(
        page.get_by_test_id("intervention-row").first.locator("ol.topk").nth(2).locator("li")
    ).to_have_count(5)


def test_an_intervention_on_a_stored_prompt_follows_the_shown_prompt(
    page: Page, model_app_url: str
) -> None:
    open_app(page, model_app_url, "?prompt=1")
    keys = pin_components(page, 2)
    page.get_by_test_id("ablate-pinned").click()
    body = {"intervention": {"mode": "ablate", "components": keys}, "top_k": 3}
    expect_table(page, post(model_app_url, "/api/interventions", {"prompt_id": 1, **body}))
    expect(page.get_by_test_id("intervention-summary")).to_contain_text("#1")
    # switching prompts reruns the same intervention on the new one
    page.locator('[data-testid="prompt-item"][data-prompt-id="2"]').click()
    expect(page.get_by_test_id("intervention-summary")).to_contain_text("#2")
    expect_table(page, post(model_app_url, "/api/interventions", {"prompt_id": 2, **body}))


def test_running_over_the_search_results_shows_a_summary(page: Page, model_app_url: str) -> None:
    open_app(page, model_app_url, "?prompt=1")
    keys = pin_components(page, 1)
    page.get_by_test_id("search-button").click()
    expect(page.get_by_test_id("search-status")).to_contain_text("prompt")
    button = page.get_by_test_id("search-intervene")
    expect(button).to_be_visible()
    expect(button).to_contain_text("Ablate the 1 pin over")
    button.click()
    progress = page.get_by_test_id("search-intervention-progress-text")
    expect(progress).to_have_attribute("data-state", "done", timeout=60_000)
    search = {"components": keys, "exclude": [], "mode": "all", "same_position": False}
    events = search_events(
        model_app_url,
        {
            "search": {**search, "min_ci": 0, "rank": "specificity"},
            "intervention": {"mode": "ablate", "components": keys},
            "limit": INTERVENTION_SEARCH,
        },
    )
    start, *prompts, done = events
    assert start["type"] == "start" and done["type"] == "done"
    rows = page.get_by_test_id("search-intervention-row")
    expect(rows).to_have_count(len(prompts))
    ids = rows.evaluate_all("els => els.map(e => Number(e.dataset.promptId))")
    assert ids == [p["prompt_id"] for p in prompts]
    flags = rows.evaluate_all("els => els.map(e => e.dataset.top1Changed === 'true')")
    assert flags == [p["top1_changed"] for p in prompts]
    aggregate = done["aggregate"]
    share = round(aggregate["share_top1_changed"] * 100)
    expect(page.get_by_test_id("aggregate-share")).to_contain_text(
        f"Top-1 changed in {share}% of {aggregate['n_prompts']} prompts"
    )
    expect(page.get_by_test_id("aggregate-row")).to_have_count(3)
    expect(progress).to_contain_text(f"Done: {len(prompts)} of {len(prompts)} prompts")
    # a row opens its prompt
    rows.nth(1).click()
    page.wait_for_url(re.compile(rf"[?&]prompt={prompts[1]['prompt_id']}(&|$)"))
    expect(rows.nth(1)).to_have_class(re.compile("active"))


def test_bad_input_is_one_readable_line(page: Page, model_app_url: str, console: Console) -> None:
    open_app(page, model_app_url, "?prompt=1")
    too_long = " ".join(["the cat"] * 60)  # past the demo model's 64-token context
    type_prompt(page, too_long)
    status = page.get_by_test_id("own-prompt-status")
    expect(status).to_contain_text("Computing the graph of your prompt failed")
    expect(status).to_contain_text("context")
    expect(status).to_have_class(re.compile("error"))
    expect(page.get_by_test_id("graph-status")).to_contain_text("context")
    console.allow("422")


def test_without_a_model_the_box_says_so(page: Page, app_url: str) -> None:
    open_app(page, app_url, "?prompt=1")
    expect(page.get_by_test_id("own-prompt-input")).to_be_disabled()
    expect(page.get_by_test_id("own-prompt-submit")).to_be_disabled()
    expect(page.get_by_test_id("own-prompt-status")).to_contain_text("holds no model")
    expect(page.get_by_test_id("intervention-dock")).to_be_hidden()
    pin(page, component_nodes(page)[0])
    page.get_by_test_id("search-button").click()
    expect(page.get_by_test_id("search-status")).to_contain_text("prompt")
    expect(page.get_by_test_id("search-intervene")).to_be_hidden()
    # a shared link to a typed prompt explains itself, without asking the server in vain
    page.goto(f"{app_url}/?text={quote(TEXT)}")
    expect(page.get_by_test_id("graph-status")).to_contain_text("holds no model")
    expect(page.get_by_test_id("graph-status")).to_contain_text("--model")
