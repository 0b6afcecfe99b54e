"""API benchmark: real HTTP against `locattr serve` in a subprocess.

On the storage benchmark's 20,000-prompt synthetic database plus a few prompts with graphs of about
a million edges: search latency (vs the original server's search, same run), pruned-graph
latency on those prompts in random order (vs loading the original's stored graph, same run), and
throughput with 32 concurrent clients on a mix of endpoints and random prompt ids. The server
caches no results: every request reads and decodes from the database.

    python -m benchmarks.bench_api [--quick]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np

from benchmarks import original_storage
from benchmarks.bench_storage import build_search_corpus
from benchmarks.synthetic import Shape, synthetic_graph
from locattr import LocalAttrDB
from locattr.storage import PromptRecord

CLIENTS = 32
BIG_GRAPHS = 4
ORIGINAL_REPEAT = 3


def start_server(db: Path, port: int, *extra: str, wait_s: float = 60.0) -> subprocess.Popen[bytes]:
    """`locattr serve --db DB --port PORT EXTRA...` in a subprocess, once it answers."""
    locattr = str(Path(sys.executable).with_name("locattr"))
    command = [locattr, "serve", "--db", str(db), "--port", str(port), *extra]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1)
            return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"{' '.join(command[1:])} did not start")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def percentiles(times: list[float]) -> tuple[float, float]:
    return statistics.median(times) * 1e3, float(np.percentile(times, 95)) * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 prompts, fewer repeats")
    args = parser.parse_args(argv)
    n_prompts, repeat, graph_repeat = (2_000, 5, 12) if args.quick else (20_000, 20, 60)
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory(prefix="locattr-bench-api-") as tmp:
        path, original_path = Path(tmp) / "api.db", Path(tmp) / "original.db"
        corpus = build_search_corpus(path, original_path, n_prompts, 1000, rng)
        big_shape = replace(Shape(), keep_fraction=0.4)
        bigs = [synthetic_graph(big_shape, rng) for _ in range(BIG_GRAPHS)]
        with LocalAttrDB(path) as db:
            db.add_prompts(
                [
                    PromptRecord(f"bench:big{i}", list(range(32)), [" w"] * 32, big)
                    for i, big in enumerate(bigs)
                ]
            )
            big_ids = list(range(db.get_prompt_count() - BIG_GRAPHS + 1, db.get_prompt_count() + 1))
            db.build_postings()
        theirs_blob = original_storage.encode(bigs[0], big_shape)
        port = free_port()
        server = start_server(path, port)
        rows: list[tuple[str, str]] = []
        figures: dict[str, float] = {}
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                # A new server's first requests compile its SQL statements: warm up on others.
                client.get("/api/search", params={"components": f"{Shape().layers[0]}:0"})
                client.get("/api/prompt/1")
                speedups, p95s = [], []
                original = original_storage.OriginalDB(original_path)
                for level, triples in corpus.queries.items():
                    times = []
                    for _ in range(repeat):
                        for keys in triples:
                            start = time.perf_counter()
                            response = client.get(
                                "/api/search", params={"components": ",".join(keys)}
                            )
                            times.append(time.perf_counter() - start)
                            assert response.status_code == 200
                    theirs = []  # each query's median of ORIGINAL_REPEAT runs: one run swung ±25 %
                    for keys in triples:
                        runs = []
                        for _ in range(ORIGINAL_REPEAT):
                            start = time.perf_counter()
                            original.search(keys)
                            runs.append(time.perf_counter() - start)
                        theirs.append(statistics.median(runs))
                    p50, p95 = percentiles(times)
                    speedup = statistics.median(theirs) * 1e3 / p50
                    speedups.append(speedup)
                    p95s.append(p95)
                    rows.append(
                        (
                            f"/api/search, 3 keys in {level:.0%} of prompts",
                            f"p50 {p50:.1f} ms, p95 {p95:.1f} ms; original (in-process) "
                            f"{statistics.median(theirs) * 1e3:.0f} ms -> {speedup:.0f}x",
                        )
                    )
                original.close()
                figures["api_search_p95_ms"] = max(p95s)
                figures["api_search_speedup"] = min(speedups)

                times = []
                for big_id in rng.choice(big_ids, size=graph_repeat).tolist():
                    start = time.perf_counter()
                    response = client.get(f"/api/prompt/{big_id}", params={"top_k": 1000})
                    times.append(time.perf_counter() - start)
                    assert len(response.json()["edges"]) == 1000
                # The original server sent the whole stored graph: unzip, parse, serialise.
                theirs = [
                    timed(lambda: json.dumps(original_storage.decode(theirs_blob)))
                    for _ in range(3)
                ]
                p50, p95 = percentiles(times)
                n_edges = min(big.n_edges for big in bigs)
                rows.append(
                    (
                        f"/api/prompt/{{id}}?top_k=1000, {BIG_GRAPHS} graphs of "
                        f"{n_edges / 1e6:.2f}M+ edges, random order",
                        f"p50 {p50:.1f} ms, p95 {p95:.1f} ms; original (in-process, unpruned) "
                        f"{statistics.median(theirs) * 1e3:.0f} ms",
                    )
                )
                figures["api_graph_p95_ms"] = p95

            triples = [keys for level in corpus.queries.values() for keys in level]

            def request(choice: np.random.Generator, i: int) -> tuple[str, dict[str, str | int]]:
                match i % 5:
                    case 0:
                        keys = triples[choice.integers(len(triples))]
                        return "/api/search", {"components": ",".join(keys)}
                    case 1:
                        return "/api/prompts", {"limit": 50}
                    case 2:
                        return f"/api/prompt/{choice.integers(1, n_prompts + 1)}", {}
                    case 3:
                        return "/api/components", {"limit": 50}
                    case _:
                        return "/api/meta", {}

            errors = 0
            done = 0
            duration = 5.0 if args.quick else 15.0

            def client_loop(worker: int) -> tuple[int, int]:
                ok = bad = 0
                choice = np.random.default_rng(worker)
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                    end = time.monotonic() + duration
                    i = worker
                    while time.monotonic() < end:
                        route, params = request(choice, i)
                        i += 1
                        if http.get(route, params=params).status_code == 200:
                            ok += 1
                        else:
                            bad += 1
                return ok, bad

            start = time.perf_counter()
            with ThreadPoolExecutor(CLIENTS) as pool:
                for ok, bad in pool.map(client_loop, range(CLIENTS)):
                    done += ok
                    errors += bad
            rate = done / (time.perf_counter() - start)
            rows.append(
                (
                    f"{CLIENTS} concurrent clients, endpoint mix",
                    f"{rate:.0f} requests/s, {errors} errors",
                )
            )
            figures["api_requests_per_s"] = rate
            figures["api_errors"] = errors
        finally:
            server.terminate()
            server.wait(timeout=30)
    width = max(len(r[0]) for r in rows)
    print(f"\napi (uvicorn subprocess, {n_prompts} prompts)")
    for what, result in rows:
        print(f"{what.ljust(width)}  {result}")
    for name, value in figures.items():
        print(f"FIGURE {name} {value:.3g}")


if __name__ == "__main__":
    main()
