"""Synthetic corpora for `bench_scale`: nested 5k / 20k / 80k-prompt databases, written through
`LocalAttrDB.add_prompts` and packed by `LocalAttrDB.build_postings`, cached on disk.

The model. The real model's layers (`synthetic.Shape`: 4 blocks x 6 decomposed layers, C 1200:
28,800 components), n_ctx 32. Each component has a fixed probability of firing in a prompt,
drawn once from a log-normal (log10 standard deviation `log10_sigma`, capped at `max_share`)
whose median is solved so that a prompt has `rows_per_prompt` firing components on average:
with the defaults 80 components fire in at least half of the prompts, 552 in at least 10 %,
3,612 in 1-10 %, 9,481 in 0.1-1 % and 15,155 (over half) more rarely: a heavy tail, as SPD
components' firing frequencies have (the demo's 1,536 components: a quarter fire in under
0.5 % of its prompts, a tenth in over 73 %).

A prompt. Each component fires independently with its probability, at 1 + Poisson(
`extra_positions`) random positions (duplicates merged): ~300 index rows and ~1,000 nodes a
prompt, the demo's size (315 and 990). Edges follow a fixed wiring, as a trained model's
weights would: each component of a layer after the first has `wires` upstream partners in
earlier layers (drawn once, in proportion to their firing frequency); a node gets an edge from
every node of its partners at the same or an earlier position. That gives ~7,900 edges and a
~33 KB blob a prompt (the demo's 7,900 and 37 KB) over a bounded set of component pairs
(< 0.5 M), so the corpus attributions stay the size a real corpus's would instead of growing
with every prompt. Edge values are log-uniform in [1e-4, 0.3] with random signs; node CIs
log-uniform in [1e-3, 1].
Everything is a pure function of (the spec, the prompt index), so the 5k corpus is the first
5,000 prompts of the 20k one, which is the first 20,000 of the 80k one.

The build. Prompts are written in order through `LocalAttrDB.add_prompts` (batches of
`write_batch`, WAL checkpoint after each, the generation default value encoding), graphs made
by a worker process while the main process writes; at each size `LocalAttrDB.build_postings`
packs the postings and folds the corpus tables' deltas (as `locattr-generate` does once at the
end), and the file is copied out. Public `LocalAttrDB` calls only: storage is being
restructured underneath. Cached under `.cache/bench_scale/` (git-ignored), keyed by the spec,
the generator's and the build's source, and what storage writes (`storage_fingerprint`: a
small probe database dumped whole), so a change to what is stored rebuilds the corpora and a
reorganisation that stores the same bytes does not. The 80k build took 39 minutes at load
average 6-14 on 2 cores (about 35 prompts/s); the write path alone runs ~140 prompts/s on an
idle core, so about 15 minutes idle, packing included.
"""

from __future__ import annotations

import hashlib
import inspect
import multiprocessing
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import orjson
from numpy.typing import NDArray

from benchmarks.synthetic import KINDS
from locattr import LocalAttrDB
from locattr.graph import Graph
from locattr.storage import PromptRecord
from locattr.storage.codec import DEFAULT_VALUE_ENCODING

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "bench_scale"
VOCAB = 2048


@dataclass(frozen=True)
class CorpusSpec:
    sizes: tuple[int, ...] = (5_000, 20_000, 80_000)
    n_blocks: int = 4
    n_components: int = 1200
    n_ctx: int = 32
    rows_per_prompt: float = 300.0
    """Mean number of components firing in a prompt (its index rows)."""
    log10_sigma: float = 1.0
    max_share: float = 0.95
    extra_positions: float = 2.5
    wires: int = 18
    seed: int = 17
    write_batch: int = 256

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(f"h.{b}.{kind}" for b in range(self.n_blocks) for kind in KINDS)


class CorpusModel:
    """The spec's fixed random parts: firing probabilities and the wiring, by component id
    (``layer * n_components + index``)."""

    def __init__(self, spec: CorpusSpec) -> None:
        self.spec = spec
        self.layers = spec.layers
        c = spec.n_components
        n = len(self.layers) * c
        rng = np.random.default_rng([spec.seed, 0])
        z = rng.standard_normal(n)
        low, high = -12.0, 2.0
        for _ in range(80):  # the median solving sum(probabilities) == rows_per_prompt
            middle = (low + high) / 2
            if np.minimum(spec.max_share, 10 ** (middle + spec.log10_sigma * z)).sum() > (
                spec.rows_per_prompt
            ):
                high = middle
            else:
                low = middle
        self.probability: NDArray[np.float64] = np.minimum(
            spec.max_share, 10 ** (low + spec.log10_sigma * z)
        )
        self.wiring: NDArray[np.int64] = np.full((n, spec.wires), -1, np.int64)
        for layer in range(1, len(self.layers)):
            before = self.probability[: layer * c]
            self.wiring[layer * c : (layer + 1) * c] = rng.choice(
                layer * c, size=(c, spec.wires), p=before / before.sum()
            )

    def key(self, component_id: int) -> str:
        layer, index = divmod(int(component_id), self.spec.n_components)
        return f"{self.layers[layer]}:{index}"

    def graph(self, index: int) -> Graph:
        spec, c = self.spec, self.spec.n_components
        rng = np.random.default_rng([spec.seed, 1, index])
        fire = np.flatnonzero(rng.random(len(self.probability)) < self.probability)
        k = np.minimum(1 + rng.poisson(spec.extra_positions, len(fire)), spec.n_ctx)
        component = np.repeat(fire, k)
        # Sorted by (component, position), duplicates merged.
        packed = np.unique(component * spec.n_ctx + rng.integers(0, spec.n_ctx, len(component)))
        component, position = packed // spec.n_ctx, packed % spec.n_ctx
        n_nodes = len(component)
        # Edges: every node of each wired partner at the same or an earlier position.
        partner = self.wiring[component].reshape(-1)
        target = np.repeat(np.arange(n_nodes), spec.wires)
        wired = partner >= 0  # the first layer's components have no partners
        partner, target = partner[wired], target[wired]
        nodes_of = np.bincount(component, minlength=len(self.probability))
        first = (np.cumsum(nodes_of) - nodes_of)[partner]
        count = nodes_of[partner]
        which = np.repeat(np.arange(len(partner)), count)
        offset = np.arange(len(which)) - np.repeat(np.cumsum(count) - count, count)
        source, target = first[which] + offset, target[which]
        keep = position[source] <= position[target]
        source, target = source[keep], target[keep]
        n_edges = len(source)
        magnitude = 10 ** rng.uniform(-4.0, np.log10(0.3), n_edges)
        sign = np.where(rng.random(n_edges) < 0.5, -1.0, 1.0)
        return Graph(
            layers=self.layers,
            node_layer=component // c,
            node_pos=position,
            node_component=component % c,
            node_ci=10 ** rng.uniform(-3.0, 0.0, n_nodes),
            edge_source=source,
            edge_target=target,
            edge_value=(magnitude * sign).astype(np.float32),
        )

    def record(self, index: int) -> PromptRecord:
        rng = np.random.default_rng([self.spec.seed, 2, index])
        token_ids = rng.integers(0, VOCAB, self.spec.n_ctx).tolist()
        return PromptRecord(
            identity=f"bench-scale:{index}",
            token_ids=token_ids,
            tokens=[f" w{t}" for t in token_ids],
            graph=self.graph(index).canonical(),
            source={"synthetic": index},
        )


_WORKER_MODEL: CorpusModel | None = None


def _init_worker(spec: CorpusSpec) -> None:
    global _WORKER_MODEL
    _WORKER_MODEL = CorpusModel(spec)


def _records(start: int, stop: int) -> list[PromptRecord]:
    assert _WORKER_MODEL is not None
    return [_WORKER_MODEL.record(i) for i in range(start, stop)]


def _batches(spec: CorpusSpec, start: int, stop: int) -> Iterator[list[PromptRecord]]:
    """The records of prompts `start`..`stop`, a write batch at a time, made by a worker
    process a few batches ahead."""
    bounds = [(a, min(a + spec.write_batch, stop)) for a in range(start, stop, spec.write_batch)]
    ahead = 4
    with ProcessPoolExecutor(
        1,
        mp_context=multiprocessing.get_context("spawn"),  # no fork of open database handles
        initializer=_init_worker,
        initargs=(spec,),
    ) as pool:
        pending: list[Future[list[PromptRecord]]] = [
            pool.submit(_records, a, b) for a, b in bounds[:ahead]
        ]
        for i in range(len(bounds)):
            if i + ahead < len(bounds):
                pending.append(pool.submit(_records, *bounds[i + ahead]))
            yield pending[i].result()
            pending[i] = Future()  # let the batch go


@dataclass(frozen=True)
class Stage:
    n_prompts: int
    writes_s: float
    """Writing its new prompts (`add_prompts` + checkpoints)."""
    postings_s: float
    """`build_postings` at this size (its final fold included)."""
    file_bytes: int
    load_average: float
    """The machine's 1-minute load average when the stage finished (other work slows it)."""


@dataclass(frozen=True)
class Corpora:
    folder: Path
    spec: CorpusSpec
    stages: list[Stage]
    origin: str

    def path(self, n_prompts: int) -> Path:
        return self.folder / f"prompts-{n_prompts}.db"


PROBE_PROMPTS = 16


def storage_fingerprint(spec: CorpusSpec) -> str:
    """What `locattr.storage` writes today: a probe database of the spec's first
    `PROBE_PROMPTS` prompts, written and packed as `build` does, dumped whole (schema, alembic
    revision, every row). A change to what is stored changes it; a restructuring that stores
    the same bytes (storage is being reorganised) leaves cached corpora valid."""
    model = CorpusModel(spec)
    digest = hashlib.sha256()
    with tempfile.TemporaryDirectory(prefix="locattr-bench-scale-") as tmp:
        path = Path(tmp) / "probe.db"
        with LocalAttrDB(path) as db:
            db.register_layers({name: spec.n_components for name in spec.layers})
            db.add_prompts(
                [model.record(i) for i in range(PROBE_PROMPTS)],
                value_encoding=DEFAULT_VALUE_ENCODING,
            )
            db.build_postings()
        connection = sqlite3.connect(path)
        for line in connection.iterdump():
            digest.update(line.encode())
        connection.close()
    return digest.hexdigest()


def corpus_key(spec: CorpusSpec) -> str:
    """What a cached build depends on: the spec, the code that makes and writes the prompts,
    and what storage writes (`storage_fingerprint`)."""
    digest = hashlib.sha256(orjson.dumps(asdict(spec)))
    for code in (CorpusModel, build):
        digest.update(inspect.getsource(code).encode())
    digest.update(storage_fingerprint(spec).encode())
    return digest.hexdigest()[:16]


def build(spec: CorpusSpec, folder: Path, log: Callable[[str], None]) -> list[Stage]:
    work = folder / "building.db"
    for stale in folder.glob("building.db*"):
        stale.unlink()
    with LocalAttrDB(work) as db:
        db.register_layers({name: spec.n_components for name in spec.layers})
    stages: list[Stage] = []
    done = 0
    for size in sorted(spec.sizes):
        started = time.perf_counter()
        with LocalAttrDB(work) as db:
            for records in _batches(spec, done, size):
                db.add_prompts(records, value_encoding=DEFAULT_VALUE_ENCODING)
                db.checkpoint()
                done += len(records)
                if done % 5000 < spec.write_batch:
                    rate = done / (time.perf_counter() - started + sum(s.writes_s for s in stages))
                    log(f"  scale corpus: {done} / {spec.sizes[-1]} prompts ({rate:.0f}/s)")
            written = time.perf_counter() - started
            started = time.perf_counter()
            db.build_postings()
            packed = time.perf_counter() - started
        target = folder / f"prompts-{size}.db"
        if size == max(spec.sizes):
            work.rename(target)
        else:
            shutil.copyfile(work, target)
        stages.append(Stage(size, written, packed, target.stat().st_size, os.getloadavg()[0]))
        log(f"  scale corpus: {size} prompts written in {written:.0f} s, packed in {packed:.0f} s")
    for leftover in folder.glob("building.db*"):
        leftover.unlink()
    return stages


def cached_corpora(spec: CorpusSpec, rebuild: bool, log: Callable[[str], None]) -> Corpora:
    """The corpora of `spec` (built when missing or asked; older builds removed)."""
    folder = CACHE / f"corpora-{max(spec.sizes)}-{corpus_key(spec)}"
    done = folder / "build.json"
    origin = "cached"
    if rebuild or not done.exists():
        if CACHE.is_dir():
            for stale in CACHE.glob(f"corpora-{max(spec.sizes)}-*"):
                shutil.rmtree(stale)
        folder.mkdir(parents=True)
        stages = build(spec, folder, log)
        done.write_bytes(orjson.dumps([asdict(s) for s in stages]))
        origin = "built now"
    stages = [Stage(**s) for s in orjson.loads(done.read_bytes())]
    return Corpora(folder, spec, stages, origin)
