"""Corpus benchmark: co-firing by association over every prompt, and the search rankings.

On the storage benchmark's synthetic index (`bench_storage.build_search_corpus`: 20,000 prompts
of 1,000 firing components each, Zipf-like component frequencies, probe components firing in
about 1 %, 10 % and 50 % of the prompts):

- co-firing as `/api/components/{key}/cofiring` computes it (`LocalAttrDB.get_cofiring`, in
  process), against, in the same run, one plain SQL GROUP BY over the index (a self-join
  through its prompt index) and the naive way: read the index rows of each of the component's
  prompts (the original system's layout, by prompt id) and count them in Python;
- 3-key searches ranked by `specificity` (the default) and by `max_ci` (the former score).

    python -m benchmarks.bench_corpus            # 20,000 prompts (a few minutes)
    python -m benchmarks.bench_corpus --quick    # 5,000 prompts, fewer repetitions
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.bench_storage import Row, build_search_corpus, print_table
from locattr import LocalAttrDB
from locattr.storage.queries import RANKS

LIMIT = 20


def original_cofiring(connection: sqlite3.Connection, key: str) -> Counter[str]:
    """The naive way on the original's layout: the component's prompts, then each prompt's
    index rows (by its prompt-id index), counted in Python."""
    counts: Counter[str] = Counter()
    prompts = connection.execute(
        "SELECT prompt_id FROM component_activations WHERE component_key = ?", (key,)
    ).fetchall()
    for (prompt_id,) in prompts:
        counts.update(
            row[0]
            for row in connection.execute(
                "SELECT component_key FROM component_activations WHERE prompt_id = ?",
                (prompt_id,),
            )
        )
    del counts[key]
    return counts


def plain_sql_cofiring(connection: sqlite3.Connection, component_id: int) -> dict[int, int]:
    """One GROUP BY: the index rows of the component's prompts, through the prompt index."""
    return dict(
        connection.execute(
            "SELECT b.component_id, count(*) FROM component_activations a "
            "JOIN component_activations b ON b.prompt_id = a.prompt_id "
            "WHERE a.component_id = ? AND b.component_id != ? GROUP BY b.component_id",
            (component_id, component_id),
        ).fetchall()
    )


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def bench_cofiring(
    db: LocalAttrDB,
    path: Path,
    original_path: Path,
    probes: dict[str, list[str]],
    repeat: int,
) -> tuple[list[Row], dict[str, float]]:
    rows: list[Row] = []
    p95s: dict[str, float] = {}
    speedups: list[float] = []
    ours_sql = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    original = sqlite3.connect(f"file:{original_path}?mode=ro", uri=True)
    slots = db.layer_slots()
    for level, keys in probes.items():
        times = []
        for _ in range(repeat):
            for key in keys:
                times.append(timed(lambda key=key: db.get_cofiring(key, limit=LIMIT)))
        key = keys[0]  # each way once (the naive one takes seconds), checked against ours
        found = db.get_cofiring(key, limit=1000, min_count=1, order="count")
        assert found is not None
        layer, index = key.rsplit(":", 1)
        start = time.perf_counter()
        counts = plain_sql_cofiring(ours_sql, slots[layer].first_component_id + int(index))
        sql_time = time.perf_counter() - start
        start = time.perf_counter()
        naive = original_cofiring(original, key)
        naive_time = time.perf_counter() - start
        assert found.n_partners == len(naive) == len(counts)
        for partner in found.partners:
            layer, index = partner.key.rsplit(":", 1)
            partner_id = slots[layer].first_component_id + int(index)
            assert naive[partner.key] == partner.count == counts[partner_id], partner
        p50, p95 = statistics.median(times) * 1e3, float(np.percentile(times, 95)) * 1e3
        speedup = naive_time / statistics.median(times)
        p95s[level] = p95
        speedups.append(speedup)
        rows.append(
            Row(
                f"co-firing, components in {level} of prompts (n_A ~{found.prompt_count})",
                f"p50 {p50:.1f} ms, p95 {p95:.1f} ms (plain SQL GROUP BY {sql_time * 1e3:.0f} ms)",
                f"{naive_time * 1e3:.0f} ms",
                f"{speedup:.0f}x faster",
            )
        )
    ours_sql.close()
    original.close()
    return rows, {
        "cofiring_p95_ms": max(p95s.values()),
        "cofiring_typical_p95_ms": p95s["any (uniform)"],
        "cofiring_speedup": min(speedups),
    }


def bench_search_ranks(
    db: LocalAttrDB, queries: dict[float, list[list[str]]], repeat: int
) -> tuple[list[Row], dict[str, float]]:
    rows: list[Row] = []
    p95s: dict[str, list[float]] = {rank: [] for rank in RANKS}
    for level, triples in queries.items():
        cells = []
        for rank in RANKS:
            times = []
            for _ in range(repeat):
                for keys in triples:
                    times.append(
                        timed(
                            lambda keys=keys, rank=rank: db.find_prompts_with_components(
                                keys, limit=50, rank=rank
                            )
                        )
                    )
            p95 = float(np.percentile(times, 95)) * 1e3
            p95s[rank].append(p95)
            cells.append(f"{rank} p50 {statistics.median(times) * 1e3:.1f} ms p95 {p95:.1f} ms")
        rows.append(Row(f"3-key search, keys in {level:.0%} of prompts", cells[0], cells[1], ""))
    return rows, {"search_specificity_p95_ms": max(p95s["specificity"])}


def index_sizes(path: Path) -> tuple[list[Row], dict[str, float]]:
    """Bytes of the index and of the prompt postings (`dbstat` where SQLite has it, else the
    payload lengths)."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        sizes = dict(
            connection.execute(
                "SELECT name, sum(pgsize) FROM dbstat WHERE name IN "
                "('component_activations', 'ix_component_activations_prompt', 'prompt_postings', "
                "'component_postings') GROUP BY name"
            ).fetchall()
        )
    except sqlite3.OperationalError:
        sizes = {}
    connection.close()
    index = sizes.get("component_activations", 0) + sizes.get("ix_component_activations_prompt", 0)
    share = sizes.get("prompt_postings", 0) / index if index else float("nan")
    row = Row(
        "prompt postings (co-firing)",
        f"{sizes.get('prompt_postings', 0) / 1e6:.0f} MB",
        f"index {index / 1e6:.0f} MB",
        f"{share:.0%} of the index",
    )
    return [row], {"prompt_postings_share": share}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="5,000 prompts, fewer repetitions")
    args = parser.parse_args(argv)
    n_prompts, repeat = (5_000, 3) if args.quick else (20_000, 5)
    rng = np.random.default_rng(3)
    with tempfile.TemporaryDirectory(prefix="locattr-bench-corpus-") as tmp:
        path, original_path = Path(tmp) / "corpus.db", Path(tmp) / "original.db"
        start = time.perf_counter()
        corpus = build_search_corpus(path, original_path, n_prompts, 1000, rng)
        built = time.perf_counter() - start
        with LocalAttrDB(path) as db:
            start = time.perf_counter()
            db.build_postings()
            packed = time.perf_counter() - start
        print(
            f"corpus: {n_prompts} prompts x {corpus.rows_per_prompt} index rows, built in "
            f"{built:.0f} s, postings (per component and per prompt) packed in {packed:.0f} s"
        )
        with LocalAttrDB(path, readonly=True) as db:
            probes = {
                f"{level:.0%}".replace("%", " %"): [k for keys in triples for k in keys]
                for level, triples in corpus.queries.items()
            }
            every = db.get_unique_components()
            probes["any (uniform)"] = [
                str(k) for k in rng.choice(every, size=min(20, len(every)), replace=False)
            ]
            db.get_cofiring(every[0])  # warm the caches a server would have warm
            cofiring_rows, cofiring_figures = bench_cofiring(
                db, path, original_path, probes, repeat
            )
            search_rows, search_figures = bench_search_ranks(db, corpus.queries, repeat)
        size_rows, size_figures = index_sizes(path)
    print_table("corpus queries (SQLite, one process)", cofiring_rows + size_rows)
    print_table("search by rank (columns: specificity, max_ci)", search_rows)
    for name, value in {**cofiring_figures, **search_figures, **size_figures}.items():
        print(f"FIGURE {name} {value:.3g}")


if __name__ == "__main__":
    main()
