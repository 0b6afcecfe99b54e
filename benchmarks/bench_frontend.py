"""Frontend benchmark: the built page in headless Chromium (Debian's) against `locattr serve`.

First render of a 50,000-edge graph (the original system's real model size: 4 blocks, C 1200,
32 tokens, with the input-token and prediction rows `locattr-generate` stores, pruned on the
server to the 50,000 strongest edges) from the moment its JSON is parsed until the frame that
shows it, against the original page's method (one SVG string per render) on the same data in the
same browser; hover response over nodes (hit test, highlight, card) and over edges (edge hit
test, highlight, edge card) per pointer move, the edge hit test against the SVG page's own
(`elementFromPoint` over its 50,000 lines); and a screenshot of the demo graph for the docs.

    python -m benchmarks.bench_frontend [--quick] [--screenshot docs/demo-graph.png]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from playwright.sync_api import Browser, Page, sync_playwright
from tests.frontend.conftest import CHROMIUM_ARGS

from benchmarks.bench_api import free_port, start_server
from benchmarks.synthetic import Shape, synthetic_graph
from locattr import LocalAttrDB
from locattr.storage import PromptRecord

ROOT = Path(__file__).resolve().parents[1]
EDGES = 50_000

# The original page's way to draw: one SVG string with an element per edge and node, set as
# innerHTML on every render; timed from parsed data to the frame that shows it.
SVG_RENDER = """async ([url, edges]) => {
    const graph = await (await fetch(url)).json();
    const started = performance.now();
    const rows = [...new Set(graph.nodes.map(n => n.layer))];
    const x = n => 40 + n.pos * 40 + (n.component % 30);
    const y = n => 20 + (rows.length - rows.indexOf(n.layer)) * 30;
    let max = 0;
    for (const e of graph.edges) max = Math.max(max, Math.abs(e.value));
    const parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="1400" height="800">'];
    for (const e of graph.edges) {
        const s = graph.nodes[e.source], t = graph.nodes[e.target], a = Math.abs(e.value) / max;
        parts.push(`<line x1="${x(s)}" y1="${y(s)}" x2="${x(t)}" y2="${y(t)}" ` +
            `stroke="${e.value > 0 ? '#2196f3' : '#f44336'}" ` +
            `stroke-width="${Math.max(0.5, 2 * a)}" stroke-opacity="${0.05 + 0.95 * a}"/>`);
    }
    for (const n of graph.nodes) {
        parts.push(`<rect x="${x(n) - 4}" y="${y(n) - 4}" width="8" height="8"/>`);
    }
    parts.push('</svg>');
    const host = document.createElement('div');
    document.body.replaceChildren(host);
    host.innerHTML = parts.join('');
    await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
    const elapsed = performance.now() - started;
    // the SVG page's own hit test: the browser's, at points on its lines
    const lines = host.querySelectorAll('line');
    const hits = [];
    for (let k = 0; k < 100; k++) {
        const line = lines[(k * 7919) % lines.length].getBoundingClientRect();
        const t0 = performance.now();
        document.elementFromPoint(line.left + line.width / 2, line.top + line.height / 2);
        hits.push(performance.now() - t0);
    }
    return [elapsed, graph.edges.length, hits];
}"""


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        raise SystemExit("Debian's chromium is missing: run `make browser` (.ci/browser)")
    return path


def build_database(path: Path, rng: np.random.Generator) -> int:
    """One prompt whose stored graph has the original's real size (~130,000 edges here)."""
    shape = replace(Shape(), keep_fraction=0.05, outputs_per_position=3)
    graph = synthetic_graph(shape, rng)
    with LocalAttrDB(path) as db:
        db.register_layers({name: shape.n_components for name in shape.layers})
        db.set_meta({"run": "bench-frontend"})
        db.add_prompt(
            PromptRecord("bench:frontend", list(range(shape.n_ctx)), [" w"] * shape.n_ctx, graph)
        )
    return graph.n_edges


def timings(page: Page) -> dict[str, list[float]]:
    return page.evaluate("window.locattr.timings()")


def first_render(browser: Browser, url: str) -> dict[str, float]:
    """One cold page load: ms from the graph's parsed JSON to drawn, and to the frame after."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{url}/?prompt=1&top_k={EDGES}")
    page.wait_for_function("(window.locattr?.timings().render_painted ?? []).length > 0")
    shown = int(page.get_by_test_id("edge-count").get_attribute("data-shown") or 0)
    assert shown == EDGES, f"{shown} edges shown, expected {EDGES}"
    result = {
        name: values[0] for name, values in timings(page).items() if name.startswith("render")
    }
    page.close()
    return result


def hover_times(
    browser: Browser, url: str, moves: int
) -> tuple[list[float], list[float], list[float], list[float]]:
    """ms per pointer move over nodes (hit test + highlight + card), per highlight draw, per
    pointer move over edges (both hit tests + highlight + edge card) and per edge hit test."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{url}/?prompt=1&top_k={EDGES}")
    page.wait_for_function("(window.locattr?.timings().render_painted ?? []).length > 0")
    nodes: list[dict[str, Any]] = page.evaluate("window.locattr.shownNodes()")
    rng = np.random.default_rng(0)
    picks = rng.choice(len(nodes), size=min(moves, len(nodes)), replace=False)
    page.evaluate("window.locattr.flushTimings(true); window.locattr.clearTimings()")
    for i in picks:
        page.mouse.move(nodes[i]["x"], nodes[i]["y"])
    result = timings(page)
    edges: list[dict[str, Any]] = page.evaluate(f"window.locattr.shownEdges({moves})")
    assert len(edges) >= moves // 3, f"only {len(edges)} edges can be hovered apart from nodes"
    page.evaluate("window.locattr.clearTimings()")
    for edge in edges:
        page.mouse.move(edge["x"], edge["y"])
    edge_result = timings(page)
    page.close()
    return (
        result.get("hover", []),
        result.get("composite", []),
        edge_result.get("edge_hover", []),
        edge_result.get("edge_hit", []),
    )


def svg_render(browser: Browser, url: str) -> tuple[float, list[float]]:
    """ms to render the SVG page, and ms per hit test in it."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{url}/api/health")
    ms, n, hits = page.evaluate(SVG_RENDER, [f"{url}/api/prompt/1?top_k={EDGES}", EDGES])
    assert n == EDGES
    page.close()
    return float(ms), [float(h) for h in hits]


def screenshot(browser: Browser, out: Path, tmp: Path) -> None:
    """The demo database's first prompt at 1280x800: one component pinned, one node selected
    (its card and edges in the side panel) and an edge hovered."""
    db = tmp / "demo.db"
    generate = str(Path(sys.executable).with_name("locattr-generate"))
    subprocess.run(
        [generate, "--model", "demo", "--output", str(db), "--n-prompts", "3", "--n-ctx", "32"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    server = start_server(db, port)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"http://127.0.0.1:{port}/?prompt=1")
        page.wait_for_function("window.locattr?.shownNodes().length > 0")
        nodes: list[dict[str, Any]] = page.evaluate("window.locattr.shownNodes()")
        mlp = [n for n in nodes if ".mlp." in n["key"]]
        # selected at the left, the hovered edge at the top right: its card opens leftwards
        # without covering the selection
        selected = min(mlp, key=lambda n: (n["pos"] < 2, n["x"]))
        pinned = mlp[len(mlp) // 2]
        page.keyboard.down("Shift")
        page.mouse.click(pinned["x"], pinned["y"])
        page.keyboard.up("Shift")
        page.mouse.click(selected["x"], selected["y"])
        page.get_by_test_id("selected-card").locator(".stats").wait_for()
        edges: list[dict[str, Any]] = page.evaluate("window.locattr.shownEdges(60)")
        hovered = max(edges, key=lambda e: e["x"] - e["y"])  # top right: the card opens leftwards
        page.mouse.move(hovered["x"], hovered["y"])
        page.get_by_test_id("edge-card").wait_for()
        page.wait_for_timeout(300)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        page.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument(
        "--screenshot",
        type=Path,
        default=ROOT / "docs" / "demo-graph.png",
        help="where to save the demo graph's screenshot",
    )
    args = parser.parse_args(argv)
    loads, moves = (2, 60) if args.quick else (5, 300)
    if not (ROOT / "frontend" / "dist" / "index.html").is_file():
        raise SystemExit("the frontend is not built: run `make install`")
    rng = np.random.default_rng(3)
    with tempfile.TemporaryDirectory(prefix="locattr-bench-frontend-") as tmp_dir:
        tmp = Path(tmp_dir)
        stored = build_database(tmp / "frontend.db", rng)
        port = free_port()
        server = start_server(tmp / "frontend.db", port)
        url = f"http://127.0.0.1:{port}"
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
                first_render(browser, url)  # warm the server's caches and the browser
                renders = [first_render(browser, url) for _ in range(loads)]
                svg_runs = [svg_render(browser, url) for _ in range(loads)]
                hover, composite, edge_hover, edge_hit = hover_times(browser, url, moves)
                started = time.perf_counter()
                screenshot(browser, args.screenshot, tmp)
                shot_s = time.perf_counter() - started
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)

    drawn = statistics.median(r["render"] for r in renders)
    painted = statistics.median(r["render_painted"] for r in renders)
    svg_ms = statistics.median(ms for ms, _ in svg_runs)
    svg_hits = [hit for _, hits in svg_runs for hit in hits]
    edge_p95 = float(np.percentile(edge_hover, 95))
    edge_hit_p95 = float(np.percentile(edge_hit, 95))
    svg_hit_p95 = float(np.percentile(svg_hits, 95))
    hover_p50 = statistics.median(hover)
    hover_p95 = float(np.percentile(hover, 95))
    rows = [
        (
            "graph",
            f"{EDGES:,} of {stored:,} stored edges (top-K on the server), "
            "24 layers + inputs and predictions x 32 positions",
        ),
        ("first render: parsed JSON -> drawn", f"{drawn:.0f} ms (median of {loads} loads)"),
        ("first render: parsed JSON -> next frame", f"{painted:.0f} ms"),
        ("original method (SVG string) -> frame", f"{svg_ms:.0f} ms -> {svg_ms / painted:.1f}x"),
        (
            "hover per pointer move",
            f"p50 {hover_p50:.1f} ms, p95 {hover_p95:.1f} ms, "
            f"max {max(hover):.1f} ms ({len(hover)} moves)",
        ),
        ("highlight draw alone", f"p50 {statistics.median(composite):.1f} ms"),
        (
            "edge hover per pointer move",
            f"p50 {statistics.median(edge_hover):.1f} ms, p95 {edge_p95:.1f} ms "
            f"({len(edge_hover)} moves)",
        ),
        (
            "edge hit test alone vs SVG page's",
            f"p95 {edge_hit_p95:.2f} ms vs {svg_hit_p95:.2f} ms (elementFromPoint)",
        ),
        ("demo screenshot", f"{args.screenshot} ({shot_s:.0f} s)"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"FIGURE frontend_render_ms {painted:.3g}")
    print(f"FIGURE frontend_hover_ms {hover_p95:.3g}")
    print(f"FIGURE frontend_edge_hover_ms {edge_p95:.3g}")


if __name__ == "__main__":
    main()
