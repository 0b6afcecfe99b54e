"""Scale benchmark: how 3-key AND search and graph reads grow with the corpus (5k, 20k, 80k).

Not part of the default `make bench` run (`python -m benchmarks` skips it): the first run
builds the corpora. They are nested synthetic corpora of the real model's layers (28,800
components) with demo-sized prompts (~300 index rows, ~1,000 nodes, ~7,900 edges, ~33 KB blob
each) and log-normal component firing frequencies, written through `LocalAttrDB.add_prompts`
and packed by `build_postings` (see `scale_corpus`), cached under `.cache/bench_scale/`.

The queries. Four classes of 3-key AND queries, by the components' firing probability: rare
(0.1-1 % of prompts), common (10-50 %), frequent (>= 50 %: the longest postings) and mixed (one
rare, one 1-10 %, one frequent). Each query's keys are components firing together in one of the
first 5,000 prompts (as a user pins them from a graph), so every query has a hit at every size
and the same queries run at every size. Each query runs once first (shown apart as "first
run": page cache and statement caches still cold), then `repeat` times more, the classes
interleaved in random order so that other load on the machine spreads over all of them. The
in-process searches also report this thread's CPU time, which other load on a shared machine
changes least (at load average 6 on 2 cores the wall-clock p95 was 1.5x the CPU p95).

What is timed, at each size:

- search in process: `LocalAttrDB.find_prompts_with_components(keys, limit=50)` (the storage
  read `/api/search` runs: idf counts, postings, ranking, the page's matches and tokens);
  `search_p95_ms_<size>` is the worst class's p95, `search_p95_ms_80k` the headline (goal
  <= 25 ms);
- `/api/search` over real HTTP against `locattr serve` (a subprocess, as `bench_api`);
- graph reads: `/api/prompt/{id}` (default `top_k` 1000) over HTTP, and
  `LocalAttrDB.get_graph(id)` (read + decode) in process, on random prompt ids over the whole
  corpus;
- the original's way (`original_storage`, 5,000 prompts only): its search (GROUP BY over text
  keys, then every prompt summary loaded) on the 5k corpus's index copied into its layout,
  and its graph read (gunzip + JSON parse + serialise) on a few of the corpus's graphs.

At the largest size the benchmark also shows where a search's time goes: SQL statements by
shape (time in `execute`, from SQLAlchemy's cursor events), the query plans, the postings'
sizes per class, and a cProfile of the slowest class.

    python -m benchmarks scale                    # 5k, 20k, 80k (first run builds ~6 GB:
                                                  #   ~15 min on 2 idle cores, 39 min busy)
    python -m benchmarks.bench_scale --quick      # 1k, 4k; fewer queries
    python -m benchmarks.bench_scale --no-http    # in-process reads only
    python -m benchmarks.bench_scale --rebuild    # rebuild the cached corpora
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from benchmarks import original_storage
from benchmarks.scale_corpus import REPO, Corpora, CorpusModel, CorpusSpec, cached_corpora
from locattr import LocalAttrDB

LIMIT = 50
WARM_UP_KEYS = ("h.0.attn.q_proj:0",)
GOAL_MS = 25.0
CLASSES: dict[str, tuple[tuple[float, float], ...]] = {
    "rare": ((0.001, 0.01),) * 3,
    "common": ((0.10, 0.50),) * 3,
    "frequent": ((0.50, 1.0),) * 3,
    "mixed": ((0.001, 0.01), (0.01, 0.10), (0.50, 1.0)),
}
"""Per query class: the firing-probability range of each of its three keys."""
CLASS_LABELS = {
    "rare": "3 rare keys (0.1-1 %)",
    "common": "3 common keys (10-50 %)",
    "frequent": "3 frequent keys (>= 50 %)",
    "mixed": "mixed (0.1-1 %, 1-10 %, >= 50 %)",
}


@dataclass(frozen=True)
class Query:
    cls: str
    keys: tuple[str, ...]
    ids: tuple[int, ...]


def pick_queries(
    model: CorpusModel, n_first: int, per_class: int, rng: np.random.Generator
) -> list[Query]:
    """`per_class` queries per class, each the components of one of the first `n_first`
    prompts whose firing probabilities fall in the class's ranges."""
    queries: list[Query] = []
    p = model.probability
    for cls, ranges in CLASSES.items():
        seen: set[tuple[int, ...]] = set()
        while len([q for q in queries if q.cls == cls]) < per_class:
            graph = model.graph(int(rng.integers(n_first)))
            fired = np.unique(
                graph.node_layer.astype(np.int64) * model.spec.n_components + graph.node_component
            )
            chosen: list[int] = []
            for low, high in ranges:
                pool = np.setdiff1d(fired[(p[fired] >= low) & (p[fired] < high)], chosen)
                if not len(pool):
                    break
                chosen.append(int(rng.choice(pool)))
            ids = tuple(sorted(chosen))
            if len(chosen) == len(ranges) and ids not in seen:
                seen.add(ids)
                queries.append(Query(cls, tuple(model.key(c) for c in chosen), ids))
    return queries


def ms(seconds: float) -> float:
    return seconds * 1e3


def p95(times: list[float]) -> float:
    return float(np.percentile(times, 95))


@dataclass
class Timings:
    """Seconds per sample, by class (or one class for graph reads)."""

    first: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    warm: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    cpu: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    """This thread's CPU time per warm sample (in process only): what other load on the
    machine changes least."""
    hits: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    def cell(self, cls: str) -> str:
        times = self.warm[cls]
        return f"{ms(statistics.median(times)):.1f} / {ms(p95(times)):.1f}"

    def worst_p95(self) -> float:
        return max(p95(times) for times in self.warm.values())


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def interleaved(queries: list[Query], repeat: int, rng: np.random.Generator) -> list[Query]:
    order = [q for q in queries for _ in range(repeat)]
    return [order[i] for i in rng.permutation(len(order))]


def bench_search(
    db: LocalAttrDB, queries: list[Query], repeat: int, rng: np.random.Generator
) -> Timings:
    timings = Timings()
    db.find_prompts_with_components(WARM_UP_KEYS, limit=LIMIT)  # statement caches, layers
    for query in queries:  # first runs
        seconds, page = timed(lambda q=query: db.find_prompts_with_components(q.keys, limit=LIMIT))
        timings.first[query.cls].append(seconds)
        timings.hits[query.cls].append(page.total)
    for query in interleaved(queries, repeat, rng):
        cpu = time.thread_time()
        seconds, _ = timed(lambda q=query: db.find_prompts_with_components(q.keys, limit=LIMIT))
        timings.cpu[query.cls].append(time.thread_time() - cpu)
        timings.warm[query.cls].append(seconds)
    return timings


def bench_get_graph(db: LocalAttrDB, ids: list[int]) -> list[float]:
    db.get_graph(1)
    times = []
    for prompt_id in ids:
        seconds, graph = timed(lambda i=prompt_id: db.get_graph(i))
        assert graph is not None
        times.append(seconds)
    return times


# -- HTTP ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def served(path: Path) -> Iterator[httpx.Client]:
    """`locattr serve` on `path` in a subprocess, and a client for it."""
    port = free_port()
    locattr = str(Path(sys.executable).with_name("locattr"))
    server = subprocess.Popen(
        [locattr, "serve", "--db", str(path), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.get("/api/health")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("locattr serve did not start") from None
                    time.sleep(0.2)
            yield client
    finally:
        server.terminate()
        server.wait(timeout=30)


def http_search(client: httpx.Client, keys: tuple[str, ...]) -> int:
    response = client.get("/api/search", params={"components": ",".join(keys), "limit": LIMIT})
    assert response.status_code == 200, response.text
    return int(response.json()["count"])


def bench_http(
    client: httpx.Client,
    queries: list[Query],
    graph_ids: list[int],
    repeat: int,
    rng: np.random.Generator,
) -> tuple[Timings, list[float]]:
    timings = Timings()
    http_search(client, WARM_UP_KEYS)  # a new server's first requests compile its statements
    client.get("/api/prompt/1")
    for query in queries:
        seconds, total = timed(lambda q=query: http_search(client, q.keys))
        timings.first[query.cls].append(seconds)
        timings.hits[query.cls].append(total)
    for query in interleaved(queries, repeat, rng):
        seconds, _ = timed(lambda q=query: http_search(client, q.keys))
        timings.warm[query.cls].append(seconds)
    graph_times = []
    for prompt_id in graph_ids:
        seconds, response = timed(lambda i=prompt_id: client.get(f"/api/prompt/{i}"))
        assert response.status_code == 200, response.text
        graph_times.append(seconds)
    return timings, graph_times


# -- the original's way (5k only) -----------------------------------------------------------


def original_copy(path: Path, target: Path) -> None:
    """The index of the corpus at `path` in the original's layout (text keys, rows in prompt
    order, its two indexes), as `bench_storage.build_search_corpus` makes it; graphs left out
    (the original's graph read is timed on blobs in memory)."""
    partial = target.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    original = original_storage.OriginalDB(partial)
    connection = original.connection
    connection.executescript("PRAGMA synchronous=OFF; PRAGMA cache_size=-1000000;")
    connection.executescript("DROP INDEX idx_component_key; DROP INDEX idx_prompt_id;")
    connection.execute("ATTACH DATABASE ? AS ours", (str(path),))
    connection.executescript(
        """
        INSERT INTO prompts (id, tokens, pairs) SELECT id, tokens, x'' FROM ours.prompts;
        INSERT INTO component_activations
            SELECT a.prompt_id, l.name || ':' || c."index", a.max_ci * 1e-6, '[3]'
            FROM ours.component_activations a
            JOIN ours.components c ON c.id = a.component_id
            JOIN ours.layers l ON l.id = c.layer_id
            ORDER BY a.prompt_id, a.component_id;
        """
    )
    connection.commit()
    connection.execute("DETACH DATABASE ours")
    connection.executescript(original_storage.SCHEMA)  # recreates the two indexes
    original.close()
    partial.rename(target)


@dataclass
class OriginalTimes:
    search: dict[str, list[float]]
    graph: list[float]


def bench_original(
    corpora: Corpora, model: CorpusModel, queries: list[Query], n_graphs: int
) -> OriginalTimes:
    n = min(corpora.spec.sizes)
    target = corpora.folder / f"original-{n}.db"
    if not target.exists():
        original_copy(corpora.path(n), target)
    original = original_storage.OriginalDB(target)
    search: dict[str, list[float]] = defaultdict(list)
    with LocalAttrDB(corpora.path(n), readonly=True) as db:
        for query in queries:
            seconds, found = timed(lambda q=query: original.search(list(q.keys)))
            search[query.cls].append(seconds)
            ours = db.find_prompts_with_components(query.keys, limit=1)
            assert len(found) == ours.total, "both ways must find the same prompts"
    original.close()
    graph = []
    for index in range(n_graphs):
        blob = original_storage.encode(model.graph(index))
        graph.append(timed(lambda b=blob: orjson.dumps(original_storage.decode(b)))[0])
    return OriginalTimes(search, graph)


# -- where a search's time goes -------------------------------------------------------------


_NUMBERS = re.compile(r"\b\d+(\.\d+)?\b")


def statement_shape(sql: str) -> str:
    """The statement with its inline numbers (ids, lists) folded, to group by."""
    shape = _NUMBERS.sub("N", " ".join(sql.split()))
    return re.sub(r"N(, N)+", "N, ..", shape)


@dataclass
class SqlTimes:
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    example: dict[str, str] = field(default_factory=dict)


@contextmanager
def sql_timed(db: LocalAttrDB) -> Iterator[SqlTimes]:
    """Time in each statement's `execute` (SQLite steps to the first row there; later rows
    come in `fetch*`, which the cProfile below shows)."""
    from sqlalchemy import event

    times = SqlTimes()
    started: list[float] = []

    def before(*_args: Any) -> None:
        started.append(time.perf_counter())

    def after(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        shape = statement_shape(statement)
        times.seconds[shape] += time.perf_counter() - started.pop()
        times.calls[shape] += 1
        times.example.setdefault(shape, statement)

    event.listen(db.engine, "before_cursor_execute", before)
    event.listen(db.engine, "after_cursor_execute", after)
    try:
        yield times
    finally:
        event.remove(db.engine, "before_cursor_execute", before)
        event.remove(db.engine, "after_cursor_execute", after)


def posting_bytes(path: Path, ids: tuple[int, ...]) -> int | None:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        listed = ",".join(map(str, ids))
        row = connection.execute(
            "SELECT sum(length(prompt_ids) + length(max_ci) + length(ci_sum)) "
            f"FROM component_postings WHERE component_id IN ({listed})"
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else None
    except sqlite3.OperationalError:  # the postings moved: say nothing rather than fail
        return None
    finally:
        connection.close()


def query_plan(path: Path, sql: str) -> list[str]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}")]
    except sqlite3.Error as error:
        return [f"(no plan: {error})"]
    finally:
        connection.close()


def where_time_goes(
    path: Path, n_prompts: int, queries: list[Query], slowest: str, repeat: int
) -> list[str]:
    lines = [f"\nwhere a search's time goes at {n_prompts:,} prompts"]
    by_class: dict[str, list[Query]] = defaultdict(list)
    for query in queries:
        by_class[query.cls].append(query)
    lines.append("  postings read per query (3 components: prompt ids + max CI + CI sum):")
    for cls, members in by_class.items():
        sizes = [b for q in members if (b := posting_bytes(path, q.ids)) is not None]
        if sizes:
            lines.append(
                f"    {CLASS_LABELS[cls]:<36} mean {np.mean(sizes) / 1e3:8.0f} KB, "
                f"max {max(sizes) / 1e3:8.0f} KB"
            )
    with LocalAttrDB(path, readonly=True) as db:
        for query in by_class[slowest]:
            db.find_prompts_with_components(query.keys, limit=LIMIT)
        total_s = 0.0
        with sql_timed(db) as sql:
            for _ in range(repeat):
                for query in by_class[slowest]:
                    total_s += timed(
                        lambda q=query: db.find_prompts_with_components(q.keys, limit=LIMIT)
                    )[0]
        n = repeat * len(by_class[slowest])
        lines.append(
            f"  {CLASS_LABELS[slowest]} (the slowest class): {ms(total_s / n):.1f} ms per search, "
            "of which in SQL execute:"
        )
        for shape, seconds in sorted(sql.seconds.items(), key=lambda item: -item[1]):
            lines.append(
                f"    {ms(seconds / n):6.2f} ms  x{sql.calls[shape] / n:.0f}  {shape[:150]}"
            )
        lines.append("  query plans:")
        for shape, example in sql.example.items():
            plan = "; ".join(query_plan(path, example))
            lines.append(f"    {shape[:70]}\n      -> {plan}")
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(repeat):
            for query in by_class[slowest]:
                db.find_prompts_with_components(query.keys, limit=LIMIT)
        profile.disable()
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(14)
    lines.append(f"  cProfile ({n} searches, by own time; profiling inflates Python calls):")
    body = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(body) if "ncalls" in line), 0)
    prefixes = (str(Path(np.__file__).parents[1]) + "/", str(REPO / "src") + "/")
    for line in body[start:]:
        for prefix in prefixes:
            line = line.replace(prefix, "")
        if line.strip():
            lines.append("    " + line)
    return lines


# -- the table ------------------------------------------------------------------------------


def size_label(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@dataclass
class SizeResult:
    n_prompts: int
    search: Timings
    get_graph: list[float]
    http: Timings | None
    http_graph: list[float] | None


def build_rows(results: list[SizeResult], original: OriginalTimes | None) -> list[list[str]]:
    rows: list[list[str]] = []
    first, last = results[0], results[-1]

    def growth(a: list[float], b: list[float]) -> str:
        return f"{statistics.median(b) / statistics.median(a):.1f}x / {p95(b) / p95(a):.1f}x"

    for cls in CLASSES:
        theirs = "-"
        if original is not None:
            theirs = f"{ms(statistics.median(original.search[cls])):.0f} ms (median)"
        rows.append(
            [
                f"search in process, {CLASS_LABELS[cls]}",
                *[r.search.cell(cls) for r in results],
                growth(first.search.warm[cls], last.search.warm[cls]),
                theirs,
            ]
        )
        rows.append(
            [
                "  its CPU time p50 / p95",
                *[
                    f"{ms(statistics.median(r.search.cpu[cls])):.1f} / "
                    f"{ms(p95(r.search.cpu[cls])):.1f}"
                    for r in results
                ],
                growth(first.search.cpu[cls], last.search.cpu[cls]),
                "",
            ]
        )
        rows.append(
            [
                "  hits (mean) / first run p95",
                *[
                    f"{np.mean(r.search.hits[cls]):.0f} / {ms(p95(r.search.first[cls])):.1f}"
                    for r in results
                ],
                "",
                "",
            ]
        )
    pooled = [[t for times in r.search.warm.values() for t in times] for r in results]
    rows.append(
        [
            "search in process, the four classes pooled",
            *[f"{ms(statistics.median(p)):.1f} / {ms(p95(p)):.1f}" for p in pooled],
            growth(pooled[0], pooled[-1]),
            "",
        ]
    )
    for cls in CLASSES:
        if all(r.http is not None for r in results):
            rows.append(
                [
                    f"/api/search over HTTP, {cls}",
                    *[r.http.cell(cls) if r.http else "" for r in results],
                    growth(first.http.warm[cls], last.http.warm[cls])
                    if first.http and last.http
                    else "",
                    "",
                ]
            )
    if all(r.http_graph for r in results):
        rows.append(
            [
                "/api/prompt/{id} over HTTP (top_k 1000), random ids",
                *[
                    f"{ms(statistics.median(r.http_graph)):.1f} / {ms(p95(r.http_graph)):.1f}"
                    for r in results
                    if r.http_graph
                ],
                growth(first.http_graph or [1.0], last.http_graph or [1.0]),
                f"{ms(statistics.median(original.graph)):.0f} ms (median, in memory, unpruned)"
                if original
                else "-",
            ]
        )
    rows.append(
        [
            "LocalAttrDB.get_graph (read + decode), random ids",
            *[
                f"{ms(statistics.median(r.get_graph)):.1f} / {ms(p95(r.get_graph)):.1f}"
                for r in results
            ],
            growth(first.get_graph, last.get_graph),
            "",
        ]
    )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1k and 4k prompts, fewer queries")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached corpora")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP measurements")
    args = parser.parse_args(argv)
    spec = CorpusSpec(sizes=(1_000, 4_000)) if args.quick else CorpusSpec()
    per_class, repeat, n_graphs = (8, 3, 40) if args.quick else (25, 4, 200)
    rng = np.random.default_rng(23)
    started = time.perf_counter()
    corpora = cached_corpora(spec, args.rebuild, lambda line: print(line, flush=True))
    built = time.perf_counter() - started
    model = CorpusModel(spec)
    print(
        f"corpora ({corpora.origin}, {corpora.folder}), in {built:.0f} s this run:\n"
        + "\n".join(
            f"  {s.n_prompts:>6,} prompts: {s.file_bytes / 1e9:.2f} GB; its new prompts written "
            f"in {s.writes_s:.0f} s, postings packed in {s.postings_s:.0f} s "
            f"(load average {s.load_average:.1f})"
            for s in corpora.stages
        ),
        flush=True,
    )
    queries = pick_queries(model, min(spec.sizes), per_class, rng)
    results: list[SizeResult] = []
    for n in spec.sizes:
        path = corpora.path(n)
        graph_ids = (rng.integers(n, size=n_graphs) + 1).tolist()
        with LocalAttrDB(path, readonly=True) as db:
            search = bench_search(db, queries, repeat, rng)
            get_graph = bench_get_graph(db, graph_ids)
        http, http_graph = None, None
        if not args.no_http:
            with served(path) as client:
                http, http_graph = bench_http(client, queries, graph_ids, repeat, rng)
        results.append(SizeResult(n, search, get_graph, http, http_graph))
        print(
            f"  {n:,} prompts measured (worst class p95 {ms(search.worst_p95()):.1f} ms, "
            f"load average {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    original = bench_original(corpora, model, queries, n_graphs=3 if args.quick else 5)
    n_original = min(spec.sizes)
    header = [
        "p50 / p95 ms",
        *[f"{size_label(r.n_prompts)} prompts" for r in results],
        f"{size_label(results[-1].n_prompts)} / {size_label(results[0].n_prompts)}",
        f"original (re-implemented), {size_label(n_original)} only",
    ]
    print_table(
        f"scale: 3-key AND search (limit {LIMIT}, {per_class} queries per class x {repeat}) and "
        f"graph reads ({n_graphs} random prompts) by corpus size; SQLite, one process, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
        header,
        build_rows(results, original),
    )
    last = results[-1]
    slowest = max(CLASSES, key=lambda cls: p95(last.search.warm[cls]))
    for line in where_time_goes(
        corpora.path(last.n_prompts), last.n_prompts, queries, slowest, repeat
    ):
        print(line)
    figures: dict[str, float] = {}
    for result in results:
        label = size_label(result.n_prompts)
        figures[f"search_p95_ms_{label}"] = ms(result.search.worst_p95())
        if result.http is not None:
            figures[f"api_search_p95_ms_{label}"] = ms(result.http.worst_p95())
        if result.http_graph:
            figures[f"api_graph_p95_ms_{label}"] = ms(p95(result.http_graph))
    headline = f"search_p95_ms_{size_label(last.n_prompts)}"
    met = figures[headline] <= GOAL_MS
    print_table(
        "goals",
        ["figure", "value", "goal", ""],
        [[headline, f"{figures[headline]:.3g}", f"<= {GOAL_MS:g}", "met" if met else "MISSED"]],
    )
    for name, value in figures.items():
        print(f"FIGURE {name} {value:.3g}")


if __name__ == "__main__":
    main()
