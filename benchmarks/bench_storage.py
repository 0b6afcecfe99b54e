"""Storage benchmark: blob size, decode speed, write throughput, search latency, and a whole
demo database.

Compared in the same run with the original system's method (`original_storage`): graph blobs on
synthetic graphs of the real model's shape (`synthetic`), at the generation default (edge values
at step 1e-6, the original's precision) and at float32 and float16; and the 60-prompt demo
database (`locattr-generate --model demo --n-prompts 60`: graphs, index, activation contexts)
against the same content written in the original's database (`original_storage.write_database`).
Prints a table and one ``FIGURE`` line each.

    python -m benchmarks.bench_storage            # full size (several minutes)
    python -m benchmarks.bench_storage --quick    # small search corpus, fewer repetitions
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from benchmarks import original_storage
from benchmarks.synthetic import Shape, synthetic_graph
from locattr import LocalAttrDB
from locattr.generate import GenerateOptions, generate
from locattr.graph import Graph
from locattr.storage import (
    PromptRecord,
    ValueDtype,
    component_lists,
    decode_graph,
    encode_graph,
    queries,
)
from locattr.storage.codec import DEFAULT_VALUE_ENCODING, ValueEncoding, value_encoding_label
from locattr.storage.index_rows import from_ci_units, to_ci_units

SEARCH_PAGE = 50
LEVELS = (0.01, 0.10, 0.50)
BULK_LOAD_PRAGMAS = "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; PRAGMA cache_size=-1000000;"


@dataclass
class Row:
    what: str
    locattr: str
    original: str
    ratio: str


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_size_and_decode(
    graph: Graph, shape: Shape, repeat: int
) -> tuple[list[Row], dict[str, float]]:
    canonical = graph.canonical()
    ours = encode_graph(canonical, value_encoding=DEFAULT_VALUE_ENCODING)
    ours32 = encode_graph(canonical, value_encoding=ValueDtype.FLOAT32)
    ours16 = encode_graph(canonical, value_encoding=ValueDtype.FLOAT16)
    theirs = original_storage.encode(graph, shape)
    ours_decode = median_seconds(lambda: decode_graph(ours), repeat)
    ours32_decode = median_seconds(lambda: decode_graph(ours32), repeat)
    theirs_decode = median_seconds(lambda: original_storage.decode(theirs), max(2, repeat // 3))
    per_edge = lambda blob: f"{len(blob) / 1e6:.2f} MB ({len(blob) / graph.n_edges:.2f} B/edge)"  # noqa: E731
    figures = {
        "storage_bytes_ratio": len(ours) / len(theirs),
        "storage_bytes_ratio_f32": len(ours32) / len(theirs),
        "storage_bytes_ratio_f16": len(ours16) / len(theirs),
        "storage_decode_speedup": theirs_decode / ours_decode,
        "storage_decode_speedup_f32": theirs_decode / ours32_decode,
    }
    step = value_encoding_label(DEFAULT_VALUE_ENCODING)
    rows = [
        Row(
            f"graph blob, values at step {step} (default)",
            per_edge(ours),
            per_edge(theirs),
            f"{figures['storage_bytes_ratio']:.2f}x size",
        ),
        Row(
            "graph blob, float32 values (lossless)",
            per_edge(ours32),
            per_edge(theirs),
            f"{figures['storage_bytes_ratio_f32']:.2f}x size",
        ),
        Row(
            "graph blob, float16 values",
            per_edge(ours16),
            per_edge(theirs),
            f"{figures['storage_bytes_ratio_f16']:.2f}x size",
        ),
        Row(
            "graph decode (default)",
            f"{ours_decode * 1e3:.1f} ms",
            f"{theirs_decode * 1e3:.0f} ms",
            f"{figures['storage_decode_speedup']:.0f}x faster",
        ),
        Row(
            "graph decode (float32)",
            f"{ours32_decode * 1e3:.1f} ms",
            f"{theirs_decode * 1e3:.0f} ms",
            f"{figures['storage_decode_speedup_f32']:.0f}x faster",
        ),
    ]
    return rows, figures


def bench_write(
    graphs: list[Graph], shape: Shape, workdir: Path, n_original: int
) -> tuple[list[Row], dict[str, float]]:
    tokens = [f" w{i}" for i in range(shape.n_ctx)]
    records = [
        PromptRecord(
            identity=f"bench:{i}", token_ids=list(range(shape.n_ctx)), tokens=tokens, graph=g
        )
        for i, g in enumerate(graphs)
    ]
    with LocalAttrDB(workdir / "write.db") as db:
        db.register_layers({name: shape.n_components for name in shape.layers})
        start = time.perf_counter()
        for batch in range(0, len(records), 4):
            db.add_prompts(records[batch : batch + 4], value_encoding=DEFAULT_VALUE_ENCODING)
        ours = len(records) / (time.perf_counter() - start)
    original = original_storage.OriginalDB(workdir / "write-original.db")
    start = time.perf_counter()
    for graph in graphs[:n_original]:
        original.add_prompt(tokens, graph, shape)
    theirs = n_original / (time.perf_counter() - start)
    original.close()
    speedup = ours / theirs
    row = Row(
        "write (encode + index + commit)",
        f"{ours:.2f} prompts/s",
        f"{theirs:.3f} prompts/s",
        f"{speedup:.0f}x faster",
    )
    return [row], {"storage_write_speedup": speedup}


@dataclass
class SearchCorpus:
    n_prompts: int
    rows_per_prompt: int
    queries: dict[float, list[list[str]]]
    """Per firing level: 3-key queries whose components fire in about that share of prompts."""


def build_search_corpus(
    path: Path, original_path: Path, n_prompts: int, rows_per_prompt: int, rng: np.random.Generator
) -> SearchCorpus:
    """Index rows of `n_prompts` prompts with skewed component frequencies, in both schemas.

    Background components fire independently with Zipf-like probabilities; for each level a
    few probe triples fire together in about that share of prompts (so AND queries have hits).
    """
    shape = Shape()
    layers = shape.layers
    n_components = len(layers) * shape.n_components
    triples_per_level = 3
    probes = rng.choice(n_components, size=len(LEVELS) * triples_per_level * 3, replace=False)
    background = np.setdiff1d(np.arange(n_components), probes)
    weights = 1.0 / (1 + np.arange(len(background))) ** 0.6
    probe_rows = sum(level * 0.9 * 3 * triples_per_level for level in LEVELS)
    weights *= (rows_per_prompt - probe_rows) / weights.sum()
    probabilities = np.zeros(n_components)
    probabilities[rng.permutation(background)] = np.minimum(weights, 0.5)

    fires: list[np.ndarray] = [np.zeros(0, np.int64)] * n_components
    for c in background:
        fires[c] = np.flatnonzero(rng.random(n_prompts) < probabilities[c])
    queries: dict[float, list[list[str]]] = {}
    probe_iter = iter(probes.tolist())
    for level in LEVELS:
        queries[level] = []
        for _ in range(triples_per_level):
            base = rng.random(n_prompts) < level
            triple = [next(probe_iter) for _ in range(3)]
            for c in triple:
                fires[c] = np.flatnonzero(base & (rng.random(n_prompts) < 0.9))
            queries[level].append([_key(layers, shape, c) for c in triple])

    counts = np.array([len(f) for f in fires])
    component_ids = np.repeat(np.arange(n_components), counts)
    prompt_ids = np.concatenate(fires) + 1
    max_ci = from_ci_units(to_ci_units(rng.uniform(1e-3, 1.0, len(prompt_ids))))
    blobs = [
        np.sort(rng.choice(shape.n_ctx, size=k, replace=False)).astype("<u2").tobytes()
        for k in (1, 2, 3)
        for _ in range(30)
    ]
    blob_choice = rng.integers(len(blobs), size=len(prompt_ids))
    # CI mass: the max CI, plus a share of it at each further position (blob b has 1 + b // 30)
    extra = (blob_choice // 30) * rng.uniform(0.0, 1.0, len(prompt_ids))
    ci_sum = from_ci_units(to_ci_units(max_ci * (1.0 + extra)))
    tokens = [
        orjson.dumps([f" w{(i * 7 + j) % 97}" for j in range(shape.n_ctx)]).decode()
        for i in range(n_prompts)
    ]

    with LocalAttrDB(path) as db:
        db.register_layers({name: shape.n_components for name in layers})
    connection = sqlite3.connect(path)
    connection.executescript(BULK_LOAD_PRAGMAS)
    token_ids = orjson.dumps(list(range(shape.n_ctx))).decode()
    per_prompt = np.bincount(prompt_ids, minlength=n_prompts + 1)
    connection.executemany(
        "INSERT INTO prompts (id, identity, source, n_tokens, token_ids, tokens, n_nodes, "
        "n_edges, n_components, graph) VALUES (?, ?, '{}', ?, ?, ?, 0, 0, ?, NULL)",
        (
            (i + 1, f"bench:{i}", shape.n_ctx, token_ids, tokens[i], int(per_prompt[i + 1]))
            for i in range(n_prompts)
        ),
    )
    connection.executemany(
        "INSERT INTO component_activations (component_id, prompt_id, max_ci, positions, ci_sum) "
        "VALUES (?, ?, ?, ?, ?)",
        zip(
            component_ids.tolist(),
            prompt_ids.tolist(),
            to_ci_units(max_ci).tolist(),
            (blobs[b] for b in blob_choice.tolist()),
            to_ci_units(ci_sum).tolist(),
            strict=True,
        ),
    )
    # Each prompt's component list, as the writer stores it with the prompt.
    by_prompt = np.lexsort((component_ids, prompt_ids))
    starts = np.flatnonzero(np.diff(prompt_ids[by_prompt], prepend=-1) != 0).tolist()
    connection.executemany(
        "INSERT INTO prompt_postings (prompt_id, component_ids) VALUES (?, ?)",
        (
            (int(prompt_ids[by_prompt[a]]), component_lists.pack(component_ids[by_prompt[a:b]]))
            for a, b in zip(starts, [*starts[1:], len(by_prompt)], strict=True)
        ),
    )
    sums = np.bincount(component_ids, weights=max_ci, minlength=n_components)
    connection.executemany(
        "UPDATE components SET prompt_count = ?, sum_max_ci = ? WHERE id = ?",
        zip(counts.tolist(), sums.tolist(), range(n_components), strict=True),
    )
    connection.commit()
    connection.close()

    # The original's layout: rows in prompt order (it inserted prompt by prompt), text keys.
    original = original_storage.OriginalDB(original_path)
    original.connection.executescript(BULK_LOAD_PRAGMAS)
    original.connection.executescript("DROP INDEX idx_component_key; DROP INDEX idx_prompt_id;")
    original.connection.execute("ATTACH DATABASE ? AS ours", (str(path),))
    original.connection.executescript(
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
    original.connection.commit()
    original.connection.execute("DETACH DATABASE ours")
    original.connection.executescript(original_storage.SCHEMA)  # recreates the two indexes
    original.close()
    return SearchCorpus(n_prompts, len(prompt_ids) // n_prompts, queries)


def _key(layers: tuple[str, ...], shape: Shape, component_id: int) -> str:
    return f"{layers[component_id // shape.n_components]}:{component_id % shape.n_components}"


def bench_search(
    corpus: SearchCorpus, path: Path, original_path: Path, repeat: int
) -> tuple[list[Row], dict[str, float]]:
    rows, p95s, speedups = [], [], []
    original = original_storage.OriginalDB(original_path)
    with LocalAttrDB(path, readonly=True) as db:

        def ours(keys: list[str]) -> int:
            page = db.find_prompts_with_components(keys, limit=SEARCH_PAGE)
            db.get_prompts(page.prompt_ids)  # the previews a result list shows
            return page.total

        def plain_sql(keys: list[str]) -> None:
            """The same ranked page from one SQL GROUP BY instead of the packed postings."""
            with db.engine.connect() as connection:
                ids = tuple(
                    db.layer_slots()[k.rsplit(":")[0]].first_component_id + int(k.rsplit(":")[1])
                    for k in keys
                )
                spec = queries.MatchSpec(ids, require_all=True)
                counts = connection.exec_driver_sql(queries.search_weights(ids)).all()
                idf = {c: queries.idf(n_prompts, count) for c, count, n_prompts in counts}
                scoring = queries.Scoring("specificity", tuple(idf[c] for c in ids))
                connection.execute(
                    queries.search_prompts(spec, scoring, limit=SEARCH_PAGE, after=None)
                ).all()

        for level, triples in corpus.queries.items():
            times, totals, sql_times = [], [], []
            for _ in range(repeat):
                for keys in triples:
                    start = time.perf_counter()
                    totals.append(ours(keys))
                    times.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    plain_sql(keys)
                    sql_times.append(time.perf_counter() - start)
            p95 = float(np.percentile(times, 95))
            sql_p95 = float(np.percentile(sql_times, 95))
            theirs = []
            for keys in triples:
                start = time.perf_counter()
                found = original.search(keys)
                theirs.append(time.perf_counter() - start)
                assert len(found) == ours(keys), "both methods must find the same prompts"
            speedup = statistics.median(theirs) / statistics.median(times)
            p95s.append(p95)
            speedups.append(speedup)
            rows.append(
                Row(
                    f"3-key AND search, keys in {level:.0%} of prompts "
                    f"(~{int(np.mean(totals))} hits)",
                    f"p95 {p95 * 1e3:.1f} ms, median {statistics.median(times) * 1e3:.1f} ms "
                    f"(plain SQL p95 {sql_p95 * 1e3:.1f} ms)",
                    f"median {statistics.median(theirs) * 1e3:.0f} ms",
                    f"{speedup:.0f}x faster",
                )
            )
    original.close()
    return rows, {"search_p95_ms": max(p95s) * 1e3, "search_speedup": min(speedups)}


DEMO_PROMPTS = 60
DEMO_PARTS: dict[str, tuple[str, ...]] = {
    "prompts (tokens, graphs)": ("prompts", "sqlite_autoindex_prompts_1"),
    "index (component -> prompts)": (
        "component_activations",
        "ix_component_activations_prompt",
        "prompt_postings",  # the index read by prompt: since schema 0006, in place of the above
        "idx_component_key",
        "idx_prompt_id",
        "components",
        "sqlite_autoindex_components_1",
        "layers",
        "sqlite_autoindex_layers_1",
    ),
    "activation contexts": (
        "activation_contexts",
        "activation_context_dictionaries",
        "meta",
        "sqlite_autoindex_meta_1",
    ),
}
"""What both databases hold, by the tables (and their indexes) that hold it. The original kept
its activation contexts in `meta`, as locattr keeps a few settings there."""

SCHEMA_TABLES = (
    "sqlite_schema",
    "sqlite_sequence",
    "alembic_version",
    "sqlite_autoindex_alembic_version_1",
)
"""Pages every database spends on its schema: counted with the content."""


def table_bytes(path: Path) -> dict[str, int]:
    """Bytes of the pages of each table and index of a SQLite file, after VACUUM (so free
    pages count nowhere); needs SQLite's `dbstat` table."""
    with tempfile.TemporaryDirectory(prefix="locattr-vacuum-") as tmp:
        copy = Path(tmp) / "vacuumed.db"
        source = sqlite3.connect(path)
        source.execute("VACUUM INTO ?", (str(copy),))
        source.close()
        connection = sqlite3.connect(copy)
        sizes = dict(connection.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"))
        connection.close()
        assert sum(sizes.values()) == copy.stat().st_size, "dbstat must account for every page"
    return sizes


def demo_database(path: Path, value_precision: ValueEncoding) -> None:
    generate(
        GenerateOptions(
            model="demo",
            output=str(path),
            n_prompts=DEMO_PROMPTS,
            n_ctx=32,
            batch_size=8,
            device="cpu",
            value_precision=value_precision,
        )
    )


def bench_demo_database(workdir: Path, *, with_float32: bool) -> tuple[list[Row], dict[str, float]]:
    """The demo database against the same content in the original's database, part by part.

    `demo_bytes_ratio` counts the content both hold (prompts with graphs, the index, the
    activation contexts, and the tables that name components); `demo_file_ratio` the whole
    file, locattr's search accelerators and corpus tables included.
    """
    ours_path, theirs_path = workdir / "demo.db", workdir / "demo-original.db"
    demo_database(ours_path, DEFAULT_VALUE_ENCODING)
    with LocalAttrDB(ours_path, readonly=True) as db:
        original_storage.write_database(db, theirs_path)
    ours, theirs = table_bytes(ours_path), table_bytes(theirs_path)
    parts = {name: sum(ours.get(t, 0) for t in tables) for name, tables in DEMO_PARTS.items()}
    their_parts = {
        name: sum(theirs.get(t, 0) for t in tables) for name, tables in DEMO_PARTS.items()
    }
    content_tables = {t for tables in DEMO_PARTS.values() for t in tables} | set(SCHEMA_TABLES)
    # Everything else is locattr's alone (no counterpart in the original): the index packed for
    # search, co-firing counts, corpus attributions and the edge index, all derived from the
    # content.
    content = sum(size for name, size in ours.items() if name in content_tables)
    ours_total, theirs_total = sum(ours.values()), sum(theirs.values())
    mb = lambda n: f"{n / 1e6:.2f} MB"  # noqa: E731
    ratio = lambda a, b: f"{a / b:.2f}x size" if b else "-"  # noqa: E731
    label = f"demo db ({DEMO_PROMPTS} prompts)"
    rows = [
        Row(f"{label}: {name}", mb(parts[name]), mb(their_parts[name]), ratio(parts[name], b))
        for name, b in their_parts.items()
    ]
    schema = content - sum(parts.values())
    rows.append(
        Row(
            f"{label}: schema",
            mb(schema),
            mb(theirs_total - sum(their_parts.values())),
            "",
        )
    )
    if with_float32:
        float32_path = workdir / "demo-float32.db"
        demo_database(float32_path, ValueDtype.FLOAT32)
        float32 = table_bytes(float32_path)
        prompts32 = sum(float32.get(t, 0) for t in DEMO_PARTS["prompts (tokens, graphs)"])
        rows.append(
            Row(
                f"{label}: prompts (tokens, graphs), float32 values",
                mb(prompts32),
                mb(their_parts["prompts (tokens, graphs)"]),
                ratio(prompts32, their_parts["prompts (tokens, graphs)"]),
            )
        )
    figures = {
        "demo_bytes_ratio": content / theirs_total,
        "demo_file_ratio": ours_total / theirs_total,
    }
    rows += [
        Row(f"{label}: same content", mb(content), mb(theirs_total), ratio(content, theirs_total)),
        Row(
            f"{label}: + search postings, corpus tables",
            mb(ours_total),
            mb(theirs_total),
            ratio(ours_total, theirs_total),
        ),
    ]
    return rows, figures


def print_table(title: str, rows: list[Row]) -> None:
    widths = [
        max(len(getattr(r, f)) for r in [Row("what", "locattr", "original", "ratio"), *rows])
        for f in ("what", "locattr", "original", "ratio")
    ]
    header = Row("what", "locattr", "original (re-implemented)", "locattr vs original")
    widths = [
        max(w, len(getattr(header, f)))
        for w, f in zip(widths, ("what", "locattr", "original", "ratio"), strict=True)
    ]
    print(f"\n{title}")
    for row in [header, *rows]:
        print(
            "  ".join(
                getattr(row, f).ljust(w)
                for f, w in zip(("what", "locattr", "original", "ratio"), widths, strict=True)
            )
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small search corpus, fewer repeats")
    args = parser.parse_args(argv)
    n_prompts = 2_000 if args.quick else 20_000
    repeat = 5 if args.quick else 20
    shape = Shape()
    rng = np.random.default_rng(0)
    graphs = [synthetic_graph(shape, rng) for _ in range(2 if args.quick else 6)]
    print(
        f"synthetic prompt: {graphs[0].n_nodes} nodes, {graphs[0].n_edges} edges "
        f"(n_ctx {shape.n_ctx}, C {shape.n_components}, {len(shape.layers)} layers)"
    )
    rows, figures = bench_size_and_decode(graphs[0], shape, repeat)
    with tempfile.TemporaryDirectory(prefix="locattr-bench-") as tmp:
        workdir = Path(tmp)
        write_rows, write_figures = bench_write(
            graphs, shape, workdir, n_original=1 if args.quick else 2
        )
        start = time.perf_counter()
        corpus = build_search_corpus(
            workdir / "search.db", workdir / "search-original.db", n_prompts, 1000, rng
        )
        pack_start = time.perf_counter()
        with LocalAttrDB(workdir / "search.db") as db:
            db.build_postings()
        print(f"postings packed in {time.perf_counter() - pack_start:.1f} s")
        print(
            f"search corpus: {corpus.n_prompts} prompts x {corpus.rows_per_prompt} index rows, "
            f"built in {time.perf_counter() - start:.0f} s"
        )
        search_rows, search_figures = bench_search(
            corpus, workdir / "search.db", workdir / "search-original.db", repeat
        )
        demo_rows, demo_figures = bench_demo_database(workdir, with_float32=not args.quick)
    print_table("storage (SQLite, one process)", rows + write_rows + search_rows + demo_rows)
    for name, value in {**figures, **write_figures, **search_figures, **demo_figures}.items():
        print(f"FIGURE {name} {value:.3g}")


if __name__ == "__main__":
    main()
