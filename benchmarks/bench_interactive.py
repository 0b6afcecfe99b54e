"""Interactive benchmark: real HTTP against `locattr serve --model demo` in a subprocess, on CPU.

On a demo database that `locattr-generate` builds: the latency of a graph for a new 32-token
prompt (`POST /api/graphs`, never cached: every prompt is new), of one intervention
(`POST /api/interventions`), the throughput of one intervention over a search's prompts
(`POST /api/interventions/search`), and 32 concurrent clients mixing the two (zero 5xx: the
queue holds them all).

    python -m benchmarks.bench_interactive [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from benchmarks.bench_api import free_port, percentiles, start_server
from locattr.demo import demo_prompts

N_CTX = 32
CLIENTS = 32
GOALS = {
    "custom_graph_p50_ms": ("<=", 250.0),
    "intervention_p50_ms": ("<=", 50.0),
    "search_intervention_prompts_per_s": (">=", 20.0),
    "concurrent_5xx": ("<=", 0.0),
}


def build_demo(path: Path, n_prompts: int) -> None:
    generate = str(Path(sys.executable).with_name("locattr-generate"))
    subprocess.run(
        [generate, "--model", "demo", "--output", str(path), "--n-prompts", str(n_prompts)]
        + ["--n-ctx", str(N_CTX), "--batch-size", "8"],
        check=True,
        capture_output=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer prompts and repeats")
    args = parser.parse_args(argv)
    n_prompts, repeat, duration = (32, 15, 4.0) if args.quick else (120, 60, 10.0)
    # New prompts: held-out windows at another seed than the database's.
    fresh = demo_prompts(repeat + 400, N_CTX, seed=11)
    rows: list[tuple[str, str]] = []
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="locattr-bench-interactive-") as tmp:
        db = Path(tmp) / "demo.db"
        build_demo(db, n_prompts)
        port = free_port()
        server = start_server(db, port, "--model", "demo", wait_s=120)
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, timeout=60) as client:
                key = next(
                    c["key"]
                    for c in client.get("/api/components", params={"limit": 100}).json()["items"]
                    if c["key"].startswith("h.0.mlp.c_fc:")
                )
                intervention = {"mode": "ablate", "components": [key]}
                for ids in fresh[-3:]:  # warm up both paths
                    client.post("/api/graphs", json={"token_ids": ids})
                    client.post(
                        "/api/interventions", json={"token_ids": ids, "intervention": intervention}
                    )

                times, n_edges = [], []
                for ids in fresh[:repeat]:
                    start = time.perf_counter()
                    response = client.post("/api/graphs", json={"token_ids": ids})
                    times.append(time.perf_counter() - start)
                    assert response.status_code == 200 and not response.json()["cached"]
                    n_edges.append(response.json()["n_edges_total"])
                p50, p95 = percentiles(times)
                rows.append(
                    (
                        f"POST /api/graphs, new {N_CTX}-token prompt (top_k 1000)",
                        f"p50 {p50:.1f} ms, p95 {p95:.1f} ms "
                        f"({statistics.median(n_edges):.0f} edges computed, median)",
                    )
                )
                figures["custom_graph_p50_ms"] = p50

                times = []
                for ids in fresh[:repeat]:
                    body = {"token_ids": ids, "intervention": intervention, "top_k": 5}
                    start = time.perf_counter()
                    response = client.post("/api/interventions", json=body)
                    times.append(time.perf_counter() - start)
                    assert response.status_code == 200
                p50, p95 = percentiles(times)
                rows.append(
                    (
                        f"POST /api/interventions, {N_CTX} tokens, ablate 1, top 5",
                        f"p50 {p50:.1f} ms, p95 {p95:.1f} ms",
                    )
                )
                figures["intervention_p50_ms"] = p50

                request = {
                    "search": {"components": [key]},
                    "intervention": intervention,
                    "limit": n_prompts,
                }
                rates, n_done = [], 0
                for _ in range(3):
                    start = time.perf_counter()
                    with client.stream("POST", "/api/interventions/search", json=request) as r:
                        lines = [json.loads(line) for line in r.iter_lines() if line]
                    elapsed = time.perf_counter() - start
                    assert lines[-1]["type"] == "done", lines[-1]
                    n_done = len(lines) - 2
                    rates.append(n_done / elapsed)
                rate = statistics.median(rates)
                rows.append(
                    (
                        f"POST /api/interventions/search, {n_done} prompts",
                        f"{rate:.0f} prompts/s (median of 3)",
                    )
                )
                figures["search_intervention_prompts_per_s"] = rate

            def client_loop(worker: int) -> tuple[int, int, int]:
                ok = busy = errors = 0
                rng = np.random.default_rng(worker)
                with httpx.Client(base_url=base, timeout=120) as http:
                    end = time.monotonic() + duration
                    i = 0
                    while time.monotonic() < end:
                        ids = fresh[int(rng.integers(len(fresh)))]
                        if (worker + i) % 2:
                            response = http.post("/api/graphs", json={"token_ids": ids})
                        else:
                            body = {"token_ids": ids, "intervention": intervention}
                            response = http.post("/api/interventions", json=body)
                        i += 1
                        match response.status_code:
                            case 200:
                                ok += 1
                            case 503:
                                busy += 1
                            case _:
                                errors += 1
                return ok, busy, errors

            start = time.perf_counter()
            with ThreadPoolExecutor(CLIENTS) as pool:
                results = list(pool.map(client_loop, range(CLIENTS)))
            elapsed = time.perf_counter() - start
            ok, busy, errors = (sum(column) for column in zip(*results, strict=True))
            rows.append(
                (
                    f"{CLIENTS} concurrent clients, graphs and interventions",
                    f"{ok / elapsed:.0f} requests/s, {busy} x 503, {errors} other errors",
                )
            )
            figures["concurrent_5xx"] = busy + errors
        finally:
            server.terminate()
            server.wait(timeout=30)
    width = max(len(r[0]) for r in rows)
    print(f"\ninteractive (locattr serve --model demo subprocess, CPU, {n_prompts} prompts)")
    for what, result in rows:
        print(f"{what.ljust(width)}  {result}")
    for name, (op, goal) in GOALS.items():
        value = figures[name]
        met = value <= goal if op == "<=" else value >= goal
        print(f"  {name} {value:.3g} (goal {op} {goal:g}: {'met' if met else 'NOT met'})")
    for name, value in figures.items():
        print(f"FIGURE {name} {value:.3g}")


if __name__ == "__main__":
    main()
