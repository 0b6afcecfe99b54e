"""Edge benchmark: the edge index and corpus attributions on a 20,000-prompt corpus of real graphs.

The corpus. Synthetic graphs of the real model's shape (`synthetic`, 1.6 M edges each) would make
20,000 stored graphs about 100 GB, so the corpus is made of the demo model's real graphs instead:
the demo database (`locattr generate` of the shipped 2-block SPD run, 200 prompts of 32 tokens,
as `locattr demo` builds it: 12 layers x 128 components, ~7,900 edges and a ~37 KB blob per
prompt) is written again and again through `LocalAttrDB.add_prompts` (batches of 64, each prompt
a new identity) until the corpus holds 20,000 prompts. Copy 0 is the demo itself; in every later
copy each layer's component ids are relabelled by a random permutation of a random quarter of
that layer's components (the other three quarters keep their ids). Graph shapes, edge values,
edges per component pair and index rows per prompt stay exactly the demo's; which components
fire together and which pairs carry strong edges vary from copy to copy, so the corpus has some
67,000 distinct indexed pairs where the demo has 5,000. A full permutation of every layer in every
copy would average each component's frequency over all components and leave no pair in more than
~7 % of the prompts; relabelling a quarter keeps the demo's skew (its most frequent pairs stay in
~65 % of the prompts, the slow case for an edge search) while the long tail grows as in a larger
corpus. The corpus file is cached under `.cache/bench_edges/` (git-ignored), keyed by the demo
graphs, these parameters and the source of `locattr.storage`, so a storage change rebuilds it.

The figures (the queries against the original's way, in the same run):

- `edge_search_p95_ms`: p95 of `LocalAttrDB.find_prompts_with_edge(source, target, limit=50)`
  over probe pairs drawn among pairs in >= 25 %, 0.5-2 % and <= 0.05 % of the prompts' edge
  index (per class in the table); `edge_search_speedup`: the original's way (candidates: the
  prompts where both components fire, from the inverted index; decode each candidate's graph
  blob, take its strongest edge between the two components, rank, read the page's prompts), its
  median over a subset of the probes over ours on the same probes. Both must give the same
  prompts, |values| and totals (asserted: this also validates the index).
- `partners_p95_ms`: p95 of `LocalAttrDB.get_partners(key, direction, limit=20)` over components
  firing in >= 25 %, 1-5 % and <= 0.5 % of the prompts, both directions; `partners_speedup`: one
  pass decoding every stored graph to sum the components' edges (the original's way; one pass
  serves all the checked components at once, so it is a lower bound per query) over our median.
  The sums must equal the stored totals exactly (in `ATTRIBUTION_UNIT`s) with the same ranking.
- `edge_index_share`: pages of the edge index (every table named `edge_*`, `edge_postings`
  today) and its indexes (SQLite `dbstat`) over the stored graph bytes (`sum(length(graph))`),
  once the build's `corpus_deltas` are folded in (checked); `corpus_attributions_share` the same
  for the corpus attributions (informational).
- `aggregate_time_share`: what the corpus tables cost a `locattr generate` build of the demo
  (after an untimed warm-up build, as `bench_generate`; one torch thread, `DEMO_THREADS`, so the
  writer thread has a core of its own and the wall time holds still from run to run: with both
  cores to torch it swung fourfold on a 2-core machine). Generation wall time: the worker's wall
  time (from its start, after loading the model, to its last write) plus the final packing
  (`postings.build_postings`); model loading and activation contexts are left out, which makes
  the share larger, not smaller. The corpus tables' work: `writes.stored_edge_values` and
  `writes.edge_rows` (in `prepare_prompt`, only for them), `writes._insert_edge_rows` (what the
  prompts add to the corpus tables, written in the write transaction) and `corpus_deltas.fold`
  (in the final packing), each timed by a stopwatch wrapped around it.
  In the build that work runs in the writer thread beside the compute thread: its wall time there
  also counts waiting for the GIL and the cores while the compute thread runs, and its CPU time
  says nothing of how much of it the compute thread hides. So the figure times it alone: the
  build's prompts are written again into a scratch database as the build wrote them (batches of
  8 through `add_prompts`, then the final packing), and the wrapped functions' wall time there
  over the build's generation wall time is the share: the wall time the work takes run alone.
  Beside the compute it may hide behind it, or cost more where the writer thread becomes the
  bottleneck and contends for the GIL: the table also shows the in-build wall and CPU time of the
  same functions and, without `--quick`, an A/B build with them stubbed out (one pair of builds,
  each within ~5 % from run to run). Other processes on the machine lengthen the build more than
  the short replay and make the share look smaller: the load average (this process's threads
  included) is printed beside the build.
- the real model's size (informational, `aggregate_real_shape_s_per_prompt`): synthetic graphs
  of the real shape (`synthetic`, 1.6 M edges, 4 blocks x C 1200) written one per `add_prompts`
  call, the corpus tables' seconds per prompt. Synthetic components are drawn at random per
  position, so almost every edge is its own component pair: more pairs per prompt than a trained
  model would have, an upper bound.

    python -m benchmarks.bench_edges            # 20,000 prompts (building the corpus: ~4 min
                                                #   on 2 cores, 1.5 GB in .cache/bench_edges/)
    python -m benchmarks.bench_edges --quick    # 2,000 prompts, fewer probes and repetitions
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar
from unittest.mock import patch

import numpy as np
import orjson
import torch
from numpy.typing import NDArray

import locattr.storage
from benchmarks.bench_storage import Row, print_table
from benchmarks.synthetic import Shape, synthetic_graph
from locattr import LocalAttrDB
from locattr.generate import GenerateOptions, GenerateResult, generate
from locattr.graph import Graph
from locattr.storage import PromptRecord, corpus_deltas, decode_graph, postings, writes
from locattr.storage.edge_rows import (
    ATTRIBUTION_UNIT,
    EDGE_INDEX_MIN_ABS,
    EdgeRows,
    PairSums,
    StrongEdges,
    edge_rows,
)
from locattr.storage.keys import ComponentKey

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "bench_edges"
DEMO_PROMPTS, DEMO_N_CTX, DEMO_BATCH = 200, 32, 8  # what `locattr demo` builds
DEMO_THREADS = 1
"""Torch threads of the timed demo builds: with as many as the cores, the writer thread beside
them oversubscribes the cores and the build's wall time swings fourfold from run to run."""
SHUFFLED_SHARE = 0.25
"""Share of each layer's components relabelled (among themselves) in each copy of the demo."""
WRITE_BATCH = 64
CORPUS_SEED = 14
SEARCH_LIMIT, PARTNERS_LIMIT = 50, 20
GOALS = {
    "edge_search_p95_ms": ("<=", 50.0),
    "edge_search_speedup": (">=", 50.0),
    "partners_p95_ms": ("<=", 10.0),
    "edge_index_share": ("<=", 0.25),
    "aggregate_time_share": ("<=", 0.10),
}

P = ParamSpec("P")
R = TypeVar("R")


# -- the demo build and what its corpus tables cost ------------------------------------------


@dataclass
class Stopwatch:
    """Wall and thread CPU time spent inside the functions it wraps."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    calls: int = 0

    def wrap(self, function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.wall_s += time.perf_counter() - wall
                self.cpu_s += time.thread_time() - cpu
                self.calls += 1

        return timed


WRITER_WORK = ("stored_edge_values", "edge_rows", "_insert_edge_rows")
"""The functions of `writes` that run only for the corpus attributions and the edge index: in
`prepare_prompt` and in the write transaction, in the writer thread while the next batch is
computed."""


def stopwatches(*names: str) -> dict[str, Stopwatch]:
    return {name: Stopwatch() for name in names}


@contextmanager
def wrapped(target: object, watches: dict[str, Stopwatch]) -> Iterator[None]:
    """`target`'s functions named in `watches` timed by their stopwatch while open."""
    with ExitStack() as stack:
        for name, watch in watches.items():
            assert hasattr(target, name), f"{target} has no {name}: update this benchmark"
            stack.enter_context(patch.object(target, name, watch.wrap(getattr(target, name))))
        yield


def total_s(watches: dict[str, Stopwatch], cpu: bool = False) -> float:
    return sum(w.cpu_s if cpu else w.wall_s for w in watches.values())


@contextmanager
def corpus_work_skipped() -> Iterator[None]:
    """A build that derives and writes no corpus table rows (for the A/B wall time only)."""
    ints, pairs = np.zeros(0, np.int64), PairSums.empty()
    nothing = EdgeRows(pairs, StrongEdges(ints, ints, np.zeros(0, np.float32), ints, ints))
    with (
        patch.object(writes, "edge_rows", lambda *_args, **_kwargs: nothing),
        patch.object(writes, "_insert_edge_rows", lambda *_args, **_kwargs: None),
    ):
        yield


@contextmanager
def compute_threads(n: int) -> Iterator[None]:
    own = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(own)


def demo_options(output: Path, n_prompts: int) -> GenerateOptions:
    return GenerateOptions(
        model="demo",
        output=str(output),
        n_prompts=n_prompts,
        n_ctx=DEMO_N_CTX,
        batch_size=DEMO_BATCH,
        device="cpu",
        context_windows=64,  # activation contexts are outside the timed phases
    )


@dataclass(frozen=True)
class TimedBuild:
    result: GenerateResult
    writer_work: dict[str, Stopwatch]
    """The corpus tables' work in the writer thread (`WRITER_WORK`)."""
    folding: Stopwatch
    """Folding the corpus tables' deltas in at the end of the build (`corpus_deltas.fold`)."""
    postings: Stopwatch
    """The whole final packing step (`postings.build_postings`), `folding` included."""

    @property
    def wall_s(self) -> float:
        """Generation wall time: the worker's (from its start, after loading the model, to its
        last write) plus the final packing; loading and activation contexts left out."""
        return max(r.wall_s for r in self.result.reports) + self.postings.wall_s

    @property
    def corpus_s(self) -> float:
        return total_s(self.writer_work) + self.folding.wall_s


def timed_build(path: Path, n_prompts: int) -> TimedBuild:
    writer_work, folding, final = stopwatches(*WRITER_WORK), Stopwatch(), Stopwatch()
    with (
        wrapped(writes, writer_work),
        wrapped(corpus_deltas, {"fold": folding}),
        wrapped(postings, {"build_postings": final}),
    ):
        result = generate(demo_options(path, n_prompts))
    assert result.added == n_prompts and len(result.reports) == 1, result
    return TimedBuild(result, writer_work, folding, final)


@dataclass(frozen=True)
class Replay:
    """The demo's prompts written again, alone (no compute beside them), as the build wrote them:
    batches of `DEMO_BATCH` through `add_prompts`, then the final packing."""

    writer_work: dict[str, Stopwatch]
    folding: Stopwatch
    add_prompts: Stopwatch
    """Every `add_prompts` call, the corpus tables' work included."""

    @property
    def corpus_s(self) -> float:
        return total_s(self.writer_work) + self.folding.wall_s


def replay(demo: Path, scratch: Path) -> Replay:
    layers, prompts = read_demo(demo)
    work, folding, whole = stopwatches(*WRITER_WORK), Stopwatch(), Stopwatch()
    with LocalAttrDB(scratch) as db:
        db.register_layers(layers)
        add = whole.wrap(db.add_prompts)
        records = [
            PromptRecord(identity=p.identity, token_ids=p.token_ids, tokens=p.tokens, graph=p.graph)
            for p in prompts
        ]
        with wrapped(writes, work), wrapped(corpus_deltas, {"fold": folding}):
            for start in range(0, len(records), DEMO_BATCH):
                add(records[start : start + DEMO_BATCH])
                db.checkpoint()
            db.build_postings()
    return Replay(work, folding, whole)


def build_demo(root: Path, with_ab: bool) -> tuple[Path, list[Row], dict[str, float]]:
    """The demo database (the corpus's source) and the share of its build spent on the corpus
    tables."""
    with compute_threads(DEMO_THREADS):
        generate(demo_options(root / "warm-up.db", 8))
        path = root / "demo.db"
        build = timed_build(path, DEMO_PROMPTS)
    load = os.getloadavg()[0]
    worker = build.result.reports[0]
    writer, wall, work = worker.db_s, build.wall_s, build.writer_work
    assert 0 < total_s(work) <= writer <= worker.wall_s, (build, writer)
    assert build.folding.wall_s <= build.postings.wall_s
    alone = replay(path, root / "replay.db")
    share = alone.corpus_s / wall
    rows = [
        Row(
            f"demo build: {DEMO_PROMPTS} prompts, n_ctx {DEMO_N_CTX}, CPU, 1 worker of "
            f"{DEMO_THREADS} thread (load average {load:.1f} on {os.cpu_count()} cores)",
            f"generation wall {wall:.1f} s = worker {worker.wall_s:.1f} + final packing "
            f"{build.postings.wall_s:.1f}",
            f"writer thread busy {writer:.1f} s",
            f"command wall {build.result.wall_s:.1f} s",
        ),
        Row(
            "corpus tables, the build's writes replayed alone: edge_rows + writes in the "
            "transaction + final fold",
            f"{alone.corpus_s:.2f} s = {alone.writer_work['edge_rows'].wall_s:.2f} + "
            f"{alone.writer_work['_insert_edge_rows'].wall_s:.2f} + {alone.folding.wall_s:.2f}",
            f"{total_s(alone.writer_work) / alone.add_prompts.wall_s:.0%} of add_prompts "
            f"({alone.add_prompts.wall_s:.1f} s)",
            f"{share:.1%} of generation wall",
        ),
        Row(
            "corpus tables inside the build: writer thread (wall; its CPU) + final fold",
            f"{total_s(work):.2f} s ({total_s(work, cpu=True):.2f} s CPU) + "
            f"{build.folding.wall_s:.2f} s",
            f"{(total_s(work, cpu=True) + build.folding.wall_s) / wall:.1%} by CPU time",
            f"{build.corpus_s / wall:.1%} of generation wall",
        ),
    ]
    if with_ab:
        with corpus_work_skipped(), compute_threads(DEMO_THREADS):
            bare = timed_build(root / "demo-bare.db", DEMO_PROMPTS)
        added = wall - bare.wall_s
        rows.append(
            Row(
                "A/B: the same build writing no corpus tables",
                f"{bare.wall_s:.1f} s generation wall",
                f"writer busy {bare.result.reports[0].db_s:.1f} s",
                f"{added:+.1f} s = {added / wall:+.1%} of generation wall",
            )
        )
    return path, rows, {"aggregate_time_share": share}


def real_shape_cost(root: Path, n_prompts: int) -> tuple[list[Row], dict[str, float]]:
    """What the corpus tables cost per prompt at the real model's size: synthetic graphs
    (`synthetic.Shape`, 1.6 M edges) written one per `add_prompts` call (the final fold left
    out)."""
    shape = Shape()
    rng = np.random.default_rng(0)
    work, whole = stopwatches(*WRITER_WORK), Stopwatch()
    pairs = strong = edges = 0
    with LocalAttrDB(root / "real-shape.db") as db:
        db.register_layers({name: shape.n_components for name in shape.layers})
        slots = db.layer_slots()
        tokens = [f" w{i}" for i in range(shape.n_ctx)]
        for i in range(n_prompts):
            graph = synthetic_graph(shape, rng).canonical()
            first = writes.layer_first(graph.layers, slots)
            found = edge_rows(graph, first, graph.edge_value, EDGE_INDEX_MIN_ABS)
            pairs, strong = pairs + len(found.pairs), strong + len(found.strong)
            edges += graph.n_edges
            record = PromptRecord(
                identity=f"real-shape:{i}",
                token_ids=list(range(shape.n_ctx)),
                tokens=tokens,
                graph=graph,
            )
            with wrapped(writes, work):
                whole.wrap(db.add_prompts)([record])
    per_prompt = total_s(work) / n_prompts
    row = Row(
        f"real shape, per prompt (synthetic: {edges / n_prompts / 1e6:.1f} M edges, "
        f"{pairs // n_prompts} pairs, {strong // n_prompts} strong)",
        f"corpus tables {per_prompt:.2f} s: edge_rows {work['edge_rows'].wall_s / n_prompts:.2f}"
        f" + writes {work['_insert_edge_rows'].wall_s / n_prompts:.2f}",
        f"add_prompts {whole.wall_s / n_prompts:.2f} s",
        f"{total_s(work) / whole.wall_s:.0%} of add_prompts",
    )
    return [row], {"aggregate_real_shape_s_per_prompt": per_prompt}


# -- the corpus --------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoPrompt:
    identity: str
    token_ids: list[int]
    tokens: list[str]
    graph: Graph


def read_demo(path: Path) -> tuple[dict[str, int], list[DemoPrompt]]:
    with LocalAttrDB(path, readonly=True) as db:
        layers = db.get_layers()
        prompts = []
        for info in db.iter_prompts():
            graph = db.get_graph(info.id)
            assert graph is not None, "the demo is built with graphs"
            prompts.append(DemoPrompt(info.identity, info.token_ids, info.tokens, graph))
    return layers, prompts


def corpus_key(demo: Path, n_prompts: int) -> str:
    """What a cached corpus depends on: its parameters, the source of `locattr.storage` (the
    schema and how prompts are written) and the demo's prompts and graphs."""
    digest = hashlib.sha256(f"{n_prompts} {SHUFFLED_SHARE} {WRITE_BATCH} {CORPUS_SEED}".encode())
    for source in sorted(Path(locattr.storage.__file__).parent.glob("*.py")):
        digest.update(source.name.encode() + source.read_bytes())
    connection = sqlite3.connect(f"file:{demo}?mode=ro", uri=True)
    for identity, blob in connection.execute("SELECT identity, graph FROM prompts ORDER BY id"):
        digest.update(identity.encode() + blob)
    connection.close()
    return digest.hexdigest()[:16]


def relabelled(graph: Graph, layer_first: NDArray[np.int64], mapping: NDArray[np.int64]) -> Graph:
    """`graph` with component ``c`` of a decomposed layer renamed to ``mapping[first + c] -
    first``; `mapping` permutes ids within each layer, so the graph stays valid."""
    first = layer_first[graph.node_layer]
    decomposed = first >= 0
    component = graph.node_component.astype(np.int64)
    component[decomposed] = mapping[first[decomposed] + component[decomposed]] - first[decomposed]
    return Graph(
        layers=graph.layers,
        node_layer=graph.node_layer,
        node_pos=graph.node_pos,
        node_component=component,
        node_ci=graph.node_ci,
        edge_source=graph.edge_source,
        edge_target=graph.edge_target,
        edge_value=graph.edge_value,
    )


def copy_mapping(
    slots: dict[str, writes.LayerSlot], n_ids: int, rng: np.random.Generator
) -> NDArray[np.int64]:
    """A component-id permutation shuffling `SHUFFLED_SHARE` of each layer among themselves."""
    mapping = np.arange(n_ids, dtype=np.int64)
    for slot in slots.values():
        ids = slot.first_component_id + rng.choice(
            slot.n_components, size=round(SHUFFLED_SHARE * slot.n_components), replace=False
        )
        mapping[ids] = rng.permutation(ids)
    return mapping


@dataclass(frozen=True)
class CorpusBuild:
    """Seconds spent writing the corpus: `add_prompts`, then the final packing (`LocalAttrDB.
    build_postings`), of which folding in the corpus tables' deltas (`corpus_deltas.fold`)."""

    writes_s: float
    postings_s: float
    folding_s: float


def build_corpus(demo: Path, path: Path, n_prompts: int) -> CorpusBuild:
    layers, prompts = read_demo(demo)
    rng = np.random.default_rng(CORPUS_SEED)
    started = time.perf_counter()
    with LocalAttrDB(path) as db:
        db.register_layers(layers)
        slots = db.layer_slots()
        n_ids = max(s.first_component_id + s.n_components for s in slots.values())
        batch: list[PromptRecord] = []
        mapping = np.arange(n_ids, dtype=np.int64)
        firsts: dict[tuple[str, ...], NDArray[np.int64]] = {}
        for i in range(n_prompts):
            copy, j = divmod(i, len(prompts))
            if j == 0 and copy:
                mapping = copy_mapping(slots, n_ids, rng)
            prompt = prompts[j]
            names = prompt.graph.layers
            if names not in firsts:
                firsts[names] = writes.layer_first(names, slots)
            batch.append(
                PromptRecord(
                    identity=f"bench-edges:{copy}:{prompt.identity}",
                    token_ids=prompt.token_ids,
                    tokens=prompt.tokens,
                    graph=relabelled(prompt.graph, firsts[names], mapping),
                    source={"copy": copy, "demo_identity": prompt.identity},
                )
            )
            if len(batch) == WRITE_BATCH or i == n_prompts - 1:
                db.add_prompts(batch)
                db.checkpoint()
                batch = []
            if (i + 1) % 2000 == 0:
                rate = (i + 1) / (time.perf_counter() - started)
                print(f"  corpus: {i + 1} / {n_prompts} prompts ({rate:.0f}/s)", flush=True)
        written = time.perf_counter() - started
        final, folding = Stopwatch(), Stopwatch()
        with (
            wrapped(corpus_deltas, {"fold": folding}),
            wrapped(postings, {"build_postings": final}),
        ):
            db.build_postings()
    return CorpusBuild(written, final.wall_s, folding.wall_s)


def cached_corpus(demo: Path, n_prompts: int, rebuild: bool) -> tuple[Path, str]:
    """The corpus file (built when missing or asked) and a line saying how it was built."""
    key = corpus_key(demo, n_prompts)
    folder = CACHE / f"corpus-{n_prompts}-{key}"
    path, done = folder / "corpus.db", folder / "build.json"
    if not done.exists() or rebuild:
        if CACHE.is_dir():  # corpora of this size built by older code or from other graphs
            for stale in CACHE.glob(f"corpus-{n_prompts}-*"):
                shutil.rmtree(stale)
        folder.mkdir(parents=True)
        done.write_bytes(orjson.dumps(asdict(build_corpus(demo, path, n_prompts))))
        origin = "built now"
    else:
        origin = "cached"
    build = CorpusBuild(**orjson.loads(done.read_bytes()))
    return path, (
        f"corpus ({origin}, {folder}): {n_prompts} prompts written through add_prompts in "
        f"{build.writes_s:.0f} s ({n_prompts / build.writes_s:.0f} prompts/s), then packed in "
        f"{build.postings_s:.0f} s (folding the corpus tables {build.folding_s:.0f} s of it)"
    )


# -- probes --------------------------------------------------------------------------------


def key_of(slots: dict[str, writes.LayerSlot]) -> Callable[[int], str]:
    by_first = sorted((s.first_component_id, name) for name, s in slots.items())
    firsts = np.array([f for f, _ in by_first])

    def key(component_id: int) -> str:
        first, name = by_first[int(np.searchsorted(firsts, component_id, side="right")) - 1]
        return str(ComponentKey(name, component_id - first))

    return key


def pick(rng: np.random.Generator, items: list[R], n: int) -> list[R]:
    chosen = rng.choice(len(items), size=min(n, len(items)), replace=False)
    return [items[i] for i in sorted(chosen.tolist())]


def edge_index_tables(connection: sqlite3.Connection) -> list[str]:
    """The edge index's tables (every table named ``edge_*``), once no delta is pending."""
    pending = connection.execute("SELECT count(*) FROM corpus_deltas").fetchone()[0]
    assert pending == 0, f"{pending} corpus deltas are not folded in: the build did not finish"
    return [
        row[0]
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'edge!_%' "
            "ESCAPE '!' ORDER BY name"
        )
    ]


def indexed_pair_counts(connection: sqlite3.Connection) -> Counter[tuple[int, int]]:
    """Per component pair, its entries in the edge index (`edge_postings` holds one
    little-endian int32 prompt id per entry)."""
    tables = edge_index_tables(connection)
    assert tables == ["edge_postings"], f"edge index tables {tables}: update this benchmark"
    counts: Counter[tuple[int, int]] = Counter()
    for source, target, n in connection.execute(
        "SELECT source_id, target_id, length(prompt_ids) / 4 FROM edge_postings"
    ):
        counts[source, target] += n
    return counts


def edge_probes(
    connection: sqlite3.Connection, key: Callable[[int], str], n: int, rng: np.random.Generator
) -> dict[str, list[tuple[str, str]]]:
    """Per class of pair frequency in the edge index, `n` (source, target) keys."""
    n_prompts = connection.execute("SELECT count(*) FROM prompts").fetchone()[0]
    counts = sorted(indexed_pair_counts(connection).items())
    classes = {
        ">= 25 %": lambda c: c >= 0.25 * n_prompts,
        "0.5-2 %": lambda c: 0.005 * n_prompts <= c <= 0.02 * n_prompts,
        "<= 0.05 %": lambda c: c <= max(1.0, 0.0005 * n_prompts),
    }
    probes = {}
    for name, wanted in classes.items():
        pairs = [(key(s), key(t)) for (s, t), c in counts if wanted(c)]
        assert pairs, f"no pair in {name} of the prompts"
        probes[name] = pick(rng, pairs, n)
    return probes


def component_probes(
    connection: sqlite3.Connection, key: Callable[[int], str], n: int, rng: np.random.Generator
) -> dict[str, list[str]]:
    """Per class of firing frequency, `n` component keys."""
    n_prompts = connection.execute("SELECT count(*) FROM prompts").fetchone()[0]
    counts = connection.execute(
        "SELECT id, prompt_count FROM components WHERE prompt_count > 0"
    ).fetchall()
    classes = {
        ">= 25 %": lambda c: c >= 0.25 * n_prompts,
        "1-5 %": lambda c: 0.01 * n_prompts <= c <= 0.05 * n_prompts,
        "<= 0.5 %": lambda c: c <= 0.005 * n_prompts,
    }
    probes = {}
    for name, wanted in classes.items():
        ids = [key(i) for i, c in counts if wanted(c)]
        assert ids, f"no component in {name} of the prompts"
        probes[name] = pick(rng, ids, n)
    return probes


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds * 1e3:.0f} ms"


# -- edge search ---------------------------------------------------------------------------


def strongest_edge(graph: Graph, source: ComponentKey, target: ComponentKey) -> float | None:
    """The largest |value| of an edge from component `source` to `target` (any positions)."""
    if source.layer not in graph.layers or target.layer not in graph.layers:
        return None
    source_nodes = (graph.node_layer == graph.layers.index(source.layer)) & (
        graph.node_component == source.index
    )
    target_nodes = (graph.node_layer == graph.layers.index(target.layer)) & (
        graph.node_component == target.index
    )
    between = source_nodes[graph.edge_source] & target_nodes[graph.edge_target]
    return float(np.abs(graph.edge_value[between]).max()) if between.any() else None


def original_edge_search(
    connection: sqlite3.Connection,
    db: LocalAttrDB,
    slots: dict[str, writes.LayerSlot],
    source: str,
    target: str,
    min_abs: float,
) -> tuple[list[tuple[int, float]], int]:
    """The original's way: every prompt where both components fire (the inverted index), its
    graph decoded, its strongest edge between them; ranked by |value| (ties by prompt id), the
    page's prompts read. Returns the page's (prompt id, max |value|) and the total."""
    keys = ComponentKey.parse(source), ComponentKey.parse(target)
    ids = [slots[k.layer].first_component_id + k.index for k in keys]
    candidates = [
        row[0]
        for row in connection.execute(
            "SELECT a.prompt_id FROM component_activations a JOIN component_activations b "
            "ON b.component_id = ? AND b.prompt_id = a.prompt_id WHERE a.component_id = ?",
            (ids[1], ids[0]),
        )
    ]
    hits: list[tuple[int, float]] = []
    for start in range(0, len(candidates), 500):
        chunk = candidates[start : start + 500]
        for prompt_id, blob in connection.execute(
            f"SELECT id, graph FROM prompts WHERE id IN ({','.join('?' * len(chunk))})", chunk
        ):
            strongest = strongest_edge(decode_graph(blob), *keys)
            if strongest is not None and strongest >= min_abs:
                hits.append((prompt_id, strongest))
    hits.sort(key=lambda hit: (-hit[1], hit[0]))
    page = hits[:SEARCH_LIMIT]
    db.get_prompts([prompt_id for prompt_id, _ in page])
    return page, len(hits)


def bench_edge_search(
    db: LocalAttrDB,
    connection: sqlite3.Connection,
    probes: dict[str, list[tuple[str, str]]],
    repeat: int,
    n_reference: int,
) -> tuple[list[Row], dict[str, float]]:
    slots = db.layer_slots()
    floor = db.edge_index_min_abs()
    rows: list[Row] = []
    all_times: list[float] = []
    ours_checked: list[float] = []
    theirs_checked: list[float] = []
    db.find_prompts_with_edge(*probes[next(iter(probes))][0], limit=SEARCH_LIMIT)  # warm up
    for level, pairs in probes.items():
        per_pair: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
        totals = []
        for _ in range(repeat):
            for pair in pairs:
                per_pair[pair].append(
                    timed(lambda pair=pair: db.find_prompts_with_edge(*pair, limit=SEARCH_LIMIT))
                )
        for pair in pairs:
            totals.append(db.find_prompts_with_edge(*pair, limit=SEARCH_LIMIT).total)
        times = [t for ts in per_pair.values() for t in ts]
        all_times += times
        ours, theirs = [], []
        for pair in pairs[:n_reference]:
            found = db.find_prompts_with_edge(*pair, limit=SEARCH_LIMIT)
            start = time.perf_counter()
            page, total = original_edge_search(connection, db, slots, *pair, floor)
            theirs.append(time.perf_counter() - start)
            ours.append(statistics.median(per_pair[pair]))
            assert found.total == total, (pair, found.total, total)
            assert [(h.prompt_id, h.max_abs) for h in found.hits] == page, pair
        ours_checked += ours
        theirs_checked += theirs
        p95 = float(np.percentile(times, 95))
        speedup = statistics.median(theirs) / statistics.median(ours)
        rows.append(
            Row(
                f"edge search, pairs in {level} of prompts (~{int(np.mean(totals))} hits, "
                f"{len(pairs)} pairs)",
                f"p50 {ms(statistics.median(times))}, p95 {ms(p95)}",
                f"median {ms(statistics.median(theirs))} ({len(theirs)} pairs)",
                f"{speedup:.0f}x faster",
            )
        )
    return rows, {
        "edge_search_p95_ms": float(np.percentile(all_times, 95)) * 1e3,
        "edge_search_speedup": statistics.median(theirs_checked) / statistics.median(ours_checked),
    }


# -- partners ------------------------------------------------------------------------------


def original_partners(
    connection: sqlite3.Connection, slots: dict[str, writes.LayerSlot], components: list[int]
) -> dict[tuple[int, str], dict[int, tuple[int, int, int]]]:
    """The original's way, one pass for all `components`: decode every stored graph and sum each
    component's edges per partner. Per (component id, direction): partner id -> (sum, sum of
    |values| in `ATTRIBUTION_UNIT`s, prompts)."""
    wanted = np.array(components, dtype=np.int64)
    parts: dict[str, list[NDArray[np.int64]]] = {"key": [], "units": [], "prompt": []}
    firsts: dict[tuple[str, ...], NDArray[np.int64]] = {}
    stride = max(s.first_component_id + s.n_components for s in slots.values())
    for prompt_id, blob in connection.execute("SELECT id, graph FROM prompts"):
        graph = decode_graph(blob)
        if graph.layers not in firsts:
            firsts[graph.layers] = writes.layer_first(graph.layers, slots)
        first = firsts[graph.layers][graph.node_layer]
        node_id = np.where(first >= 0, first + graph.node_component, -1)
        source, target = node_id[graph.edge_source], node_id[graph.edge_target]
        units = np.rint(graph.edge_value.astype(np.float64) / ATTRIBUTION_UNIT).astype(np.int64)
        for direction, (mine, other) in enumerate(((target, source), (source, target))):
            keep = np.isin(mine, wanted) & (other >= 0)
            # one integer per (component, direction, partner)
            parts["key"].append((mine[keep] * 2 + direction) * stride + other[keep])
            parts["units"].append(units[keep])
            parts["prompt"].append(np.full(int(keep.sum()), prompt_id, np.int64))
    key, units, prompt = (np.concatenate(parts[name]) for name in ("key", "units", "prompt"))
    groups, inverse = np.unique(key, return_inverse=True)
    total = np.zeros(len(groups), np.int64)
    total_abs = np.zeros(len(groups), np.int64)
    np.add.at(total, inverse, units)
    np.add.at(total_abs, inverse, np.abs(units))
    span = int(prompt.max()) + 1
    prompts = np.bincount(np.unique(inverse * span + prompt) // span, minlength=len(groups))
    result: dict[tuple[int, str], dict[int, tuple[int, int, int]]] = {
        (c, direction): {} for c in components for direction in ("upstream", "downstream")
    }
    for g, s, a, n in zip(
        groups.tolist(), total.tolist(), total_abs.tolist(), prompts.tolist(), strict=True
    ):
        mine_direction, other = divmod(g, stride)
        mine, direction = divmod(mine_direction, 2)
        result[mine, ("upstream", "downstream")[direction]][other] = (s, a, n)
    return result


def bench_partners(
    db: LocalAttrDB,
    connection: sqlite3.Connection,
    probes: dict[str, list[str]],
    repeat: int,
    n_reference: int,
) -> tuple[list[Row], dict[str, float]]:
    slots = db.layer_slots()
    key = key_of(slots)
    rows: list[Row] = []
    all_times: list[float] = []
    medians: dict[str, float] = {}
    db.get_partners(probes[next(iter(probes))][0])  # warm up
    for level, keys in probes.items():
        times = []
        n_partners = []
        for _ in range(repeat):
            for component in keys:
                for direction in ("upstream", "downstream"):
                    times.append(
                        timed(
                            lambda c=component, d=direction: db.get_partners(
                                c, direction=d, limit=PARTNERS_LIMIT
                            )
                        )
                    )
        for component in keys:
            n_partners.append(db.get_partners(component, direction="downstream").n_partners)
            n_partners.append(db.get_partners(component, direction="upstream").n_partners)
        all_times += times
        medians[level] = statistics.median(times)
        rows.append(
            Row(
                f"partners, components in {level} of prompts (~{int(np.mean(n_partners))} "
                f"partners, {len(keys)} x 2 directions)",
                f"p50 {ms(medians[level])}, p95 {ms(float(np.percentile(times, 95)))}",
                "",
                "",
            )
        )
    checked = [k for keys in probes.values() for k in keys[:n_reference]]
    ids = {}
    for k in checked:
        parsed = ComponentKey.parse(k)
        ids[k] = slots[parsed.layer].first_component_id + parsed.index
    start = time.perf_counter()
    reference = original_partners(connection, slots, list(ids.values()))
    theirs = time.perf_counter() - start
    for k, component_id in ids.items():
        for direction in ("upstream", "downstream"):
            expected = reference[component_id, direction]
            found = db.get_partners(k, direction=direction, limit=PARTNERS_LIMIT)
            assert found.n_partners == len(expected), (k, direction)
            ranked = sorted(expected.items(), key=lambda item: (-item[1][1], item[0]))
            assert [(p.key, p.total, p.total_abs, p.prompt_count) for p in found.partners] == [
                (key(other), total * ATTRIBUTION_UNIT, total_abs * ATTRIBUTION_UNIT, n)
                for other, (total, total_abs, n) in ranked[:PARTNERS_LIMIT]
            ], (k, direction)
    ours = statistics.median(all_times)
    rows.append(
        Row(
            f"partners: one pass decoding every graph ({len(ids)} components checked)",
            f"median {ms(ours)}",
            f"{ms(theirs)} per pass",
            f"{theirs / ours:.0f}x faster",
        )
    )
    return rows, {
        "partners_p95_ms": float(np.percentile(all_times, 95)) * 1e3,
        "partners_speedup": theirs / ours,
    }


# -- sizes ---------------------------------------------------------------------------------


def table_bytes(connection: sqlite3.Connection, tables: list[str]) -> int:
    """Pages of `tables` and of every index on them (SQLite `dbstat`)."""
    marks = ",".join("?" * len(tables))
    names = [
        row[0]
        for row in connection.execute(
            f"SELECT name FROM sqlite_master WHERE tbl_name IN ({marks})", tables
        )
    ]
    marks = ",".join("?" * len(names))
    query = f"SELECT sum(pgsize) FROM dbstat WHERE name IN ({marks})"
    return int(connection.execute(query, names).fetchone()[0] or 0)


def bench_sizes(connection: sqlite3.Connection) -> tuple[list[Row], dict[str, float]]:
    n_prompts, graphs = connection.execute(
        "SELECT count(*), sum(length(graph)) FROM prompts"
    ).fetchone()
    entries = sum(indexed_pair_counts(connection).values())
    pairs = connection.execute("SELECT count(*) FROM corpus_attributions").fetchone()[0]
    tables = edge_index_tables(connection)
    edges = table_bytes(connection, tables)
    attributions = table_bytes(connection, ["corpus_attributions"])
    rows = [
        Row(
            f"edge index ({entries / n_prompts:.0f} entries per prompt; {', '.join(tables)})",
            f"{edges / 1e6:.0f} MB ({edges / entries:.1f} B/entry)",
            f"graphs {graphs / 1e6:.0f} MB ({graphs / n_prompts / 1e3:.1f} KB per prompt)",
            f"{edges / graphs:.0%} of the graph bytes",
        ),
        Row(
            f"corpus attributions ({pairs} pairs)",
            f"{attributions / 1e6:.1f} MB",
            f"graphs {graphs / 1e6:.0f} MB",
            f"{attributions / graphs:.1%} of the graph bytes",
        ),
    ]
    return rows, {
        "edge_index_share": edges / graphs,
        "corpus_attributions_share": attributions / graphs,
    }


def goal_rows(figures: dict[str, float]) -> list[Row]:
    rows = []
    for name, (op, goal) in GOALS.items():
        value = figures[name]
        met = value <= goal if op == "<=" else value >= goal
        rows.append(Row(name, f"{value:.3g}", f"goal {op} {goal:g}", "met" if met else "MISSED"))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2,000 prompts, fewer probes")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached corpus")
    args = parser.parse_args(argv)
    quick, full = (2_000, 8, 3, 1, 1), (20_000, 20, 5, 3, 2)
    n_prompts, n_probes, repeat, n_reference, n_real = quick if args.quick else full
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rng = np.random.default_rng(5)
    with tempfile.TemporaryDirectory(prefix="locattr-bench-edges-") as tmp:
        demo, build_rows, build_figures = build_demo(Path(tmp), with_ab=not args.quick)
        real_rows, real_figures = real_shape_cost(Path(tmp), n_real)
        path, origin = cached_corpus(demo, n_prompts, args.rebuild)
    print(origin, flush=True)
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with LocalAttrDB(path, readonly=True) as db:
        key = key_of(db.layer_slots())
        search_rows, search_figures = bench_edge_search(
            db, connection, edge_probes(connection, key, n_probes, rng), repeat, n_reference
        )
        partner_rows, partner_figures = bench_partners(
            db, connection, component_probes(connection, key, n_probes, rng), repeat, n_reference
        )
    size_rows, size_figures = bench_sizes(connection)
    connection.close()
    figures = {
        **search_figures,
        **partner_figures,
        **size_figures,
        **build_figures,
        **real_figures,
    }
    print_table(
        f"edge search, partners, sizes ({n_prompts} prompts of relabelled demo graphs, SQLite, "
        "one process)",
        search_rows + partner_rows + size_rows,
    )
    print_table("generation: what the corpus tables cost", build_rows + real_rows)
    print_table("goals", goal_rows(figures))
    for name, value in figures.items():
        print(f"FIGURE {name} {value:.3g}")


if __name__ == "__main__":
    main()
