"""Compute benchmark: the batched fast path against the original's per-unit algorithm.

Run as `python -m benchmarks.bench_compute [--quick]`. Prints a table and `FIGURE` lines:
`compute_speedup` (seconds per prompt, reference / fast path in generate's batches of 4, same
run and device, identical edges; the one-prompt-per-call ratio is printed beside it),
`compute_speedup_spd_app` (the same for `mode="spd_app"` with `wte` and `output` nodes, against
its own per-unit reference),
`compute_cpu_prompts_per_s`, `compute_cpu_peak_mb` and `compute_backward_share` (the fraction of
fast-path time inside the batched backward passes, from the seeded targets to the alive source
components' activations: autograd to the sources' outputs, then the product with their output
directions, printed apart) at real size (C 1200, n_ctx 64), and the `compute_gpu_*` figures when
CUDA is available.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.compute.reference import reference_graph, reference_spd_app_graph  # noqa: E402
from tests.compute.spd_runs import RunSpec, write_run  # noqa: E402

from locattr.compute import LoadedRun, compute_graph, compute_graphs, load_run  # noqa: E402
from locattr.compute.attribution import edges  # noqa: E402
from locattr.compute.component_model import CACHE_INPUTS  # noqa: E402
from locattr.demo import demo_prompts, demo_run_path  # noqa: E402
from locattr.graph import Graph  # noqa: E402
from locattr.memory import keep_freed_memory  # noqa: E402


@dataclass(frozen=True)
class Shape:
    name: str
    arch: str
    C: int
    hidden: tuple[int, ...]
    n_ctx: int
    alive: float
    vocab: int


SMALL = Shape("speedup (4L d128 C256)", "GPT2Simple", 256, (16,), 32, 0.05, 512)
REAL = Shape("real size (4L d128 C1200)", "LlamaSimpleMLP", 1200, (1000,), 64, 0.03, 4019)


def write_calibrated_run(root: Path, shape: Shape) -> Path:
    """A random SPD run of `shape` on disk whose CI biases give about `shape.alive` alive units
    per token (so `locattr-generate` loading it from disk sees the same run)."""
    spec = RunSpec(
        arch=shape.arch,  # type: ignore[arg-type]
        n_layer=4,
        n_embd=128,
        n_head=4,
        vocab_size=shape.vocab,
        block_size=max(64, shape.n_ctx),
        C=shape.C,
        ci_fn_hidden_dims=shape.hidden,
        dead_fraction=0.0,
        with_tokenizer=True,  # locattr-generate shows token strings
    )
    run_dir = write_run(root, spec, name=shape.arch)
    run = load_run(run_dir, with_tokenizer=False)
    checkpoint = max(run_dir.glob("model_*.pth"), key=lambda p: int(p.stem.split("_")[1]))
    state = torch.load(checkpoint, weights_only=True)
    for path, shift in alive_shifts(run, shape).items():
        prefix = f"_ci_fns.{path.replace('.', '-')}.layers."
        last = max(
            (k for k in state if k.startswith(prefix) and k.endswith(".b")),
            key=lambda k: int(k.removeprefix(prefix).split(".")[0]),
        )
        state[last] = state[last] - shift
    torch.save(state, checkpoint)
    return run_dir


def build_run(root: Path, shape: Shape, device: str) -> LoadedRun:
    return load_run(write_calibrated_run(root, shape), device=device, with_tokenizer=False)


def alive_shifts(run: LoadedRun, shape: Shape) -> dict[str, float]:
    """Per layer, how much to lower the last CI bias so about `shape.alive` of units are alive."""
    model = run.model
    tokens = torch.randint(
        0, shape.vocab, (16, shape.n_ctx), generator=torch.Generator().manual_seed(0)
    )
    shifts = {}
    with torch.no_grad():
        inputs = model(tokens.to(model.device), CACHE_INPUTS).inputs
        for path in model.module_paths:
            pre = model.ci_fn(path)(inputs[path])
            shifts[path] = float(torch.quantile(pre.flatten().float()[:1_000_000], 1 - shape.alive))
            shifts[path] -= 0.05
    return shifts


def prompts(shape: Shape, n: int, seed: int) -> torch.Tensor:
    return torch.randint(
        0, shape.vocab, (n, shape.n_ctx), generator=torch.Generator().manual_seed(seed)
    )


def timed(fn, repeat: int = 1) -> float:  # noqa: ANN001
    """Median seconds of `repeat` calls (one slow call on this shared machine swings a mean)."""
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


@contextmanager
def backward_timer(device: str) -> Iterator[dict[str, float]]:
    """Seconds spent in the batched backward passes while the context is open: `autograd`
    (`batched_grad`, to the sources' d-wide outputs) and `components` (their last product,
    `component_grads`, to the alive components' activations), as `attribution.edges` calls
    them."""
    spent = {"autograd": 0.0, "components": 0.0}
    originals = {"autograd": edges.batched_grad, "components": edges.component_grads}

    def timing(part: str) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            result = originals[part](*args)
            if device == "cuda":
                torch.cuda.synchronize()
            spent[part] += time.perf_counter() - start
            return result

        return timed

    edges.batched_grad = timing("autograd")
    edges.component_grads = timing("components")
    try:
        yield spent
    finally:
        edges.batched_grad = originals["autograd"]  # type: ignore[assignment]
        edges.component_grads = originals["components"]  # type: ignore[assignment]


def alive_fraction(run: LoadedRun, tokens: torch.Tensor) -> float:
    with torch.no_grad():
        ci, _ = run.model.causal_importances(run.model(tokens, CACHE_INPUTS).inputs)
    return float(torch.cat([(v >= 1e-6).float().flatten() for v in ci.values()]).mean())


def _sampled(graph: Graph, stride: int) -> Graph:
    """The graph with only the edges into target units the strided reference computed."""
    nodes = graph.node_arrays()
    widths = {name: (SMALL.vocab if name == "output" else SMALL.C) for name in graph.layers}
    width = np.array([widths[name] for name in nodes["layer"]])
    keep_node = (nodes["pos"] * width + nodes["component"]) % stride == 0
    keep = keep_node[graph.edge_target]
    return Graph(
        layers=graph.layers,
        node_layer=graph.node_layer,
        node_pos=graph.node_pos,
        node_component=graph.node_component,
        node_ci=graph.node_ci,
        edge_source=graph.edge_source[keep],
        edge_target=graph.edge_target[keep],
        edge_value=graph.edge_value[keep],
    )


def speedup(root: Path, stride: int) -> list[tuple[str, str]]:
    """The reference against the fast path as `locattr-generate` runs it (prompts in batches of
    its default `--batch-size`, 4), and one prompt per call."""
    run = build_run(root, SMALL, "cpu")
    tokens = prompts(SMALL, 4, seed=1)
    ids = tokens[0].tolist()
    compute_graph(run, ids)
    fast_s = timed(lambda: compute_graph(run, ids), repeat=7)
    batched_s = timed(lambda: compute_graphs(run, tokens), repeat=5) / len(tokens)
    fast, batched = compute_graph(run, ids), compute_graphs(run, tokens)[0]
    reference = reference_graph(run, ids, structure=run.structure, target_stride=stride)
    # timed again, median of 3: the reference's Python loops swing most on this shared machine
    ref_s = (
        timed(
            lambda: reference_graph(run, ids, structure=run.structure, target_stride=stride),
            repeat=3,
        )
        * stride
    )
    same = _sampled(fast, stride).same_as(reference, rtol=1e-5, atol=1e-6)
    same_batched = batched.same_as(fast, rtol=1e-5, atol=1e-6)
    sample = "every target unit" if stride == 1 else f"1/{stride} of target units, scaled"
    return [
        ("shape", f"{SMALL.name}, n_ctx {SMALL.n_ctx}, alive {alive_fraction(run, tokens):.1%}"),
        ("torch threads", str(torch.get_num_threads())),
        ("nodes / edges per prompt", f"{fast.n_nodes} / {fast.n_edges}"),
        (f"reference (original algorithm; {sample}) s/prompt, median of 3", f"{ref_s:.2f}"),
        ("fast path, one prompt per call, s/prompt (median of 7)", f"{fast_s:.3f}"),
        ("fast path, 4 prompts per call (generate's default), s/prompt", f"{batched_s:.3f}"),
        ("identical edges on the reference's targets (rtol 1e-5)", str(same)),
        ("batched graph identical to the one-prompt graph", str(same_batched)),
        ("speedup with one prompt per call", f"{ref_s / fast_s:.1f}"),
        ("FIGURE compute_speedup", f"{ref_s / batched_s:.1f}"),
    ]


def speedup_spd_app(root: Path, stride: int) -> list[tuple[str, str]]:
    """`speedup` for the SPD app's graphs (`mode="spd_app"`, with `wte` and `output` nodes, as
    the app draws them) against their per-unit reference, on the same shape."""
    run = build_run(root, SMALL, "cpu")
    tokens = prompts(SMALL, 4, seed=1)
    ids = tokens[0].tolist()
    options: dict[str, Any] = {"include_wte": True, "include_output": True}
    compute_graph(run, ids, mode="spd_app", **options)
    fast_s = timed(lambda: compute_graph(run, ids, mode="spd_app", **options), repeat=5)
    batched_s = timed(
        lambda: compute_graphs(run, tokens, mode="spd_app", **options), repeat=3
    ) / len(tokens)
    fast = compute_graph(run, ids, mode="spd_app", **options)
    batched = compute_graphs(run, tokens, mode="spd_app", **options)[0]

    def reference() -> Graph:
        return reference_spd_app_graph(run, ids, target_stride=stride, **options)

    ref_graph = reference()
    ref_s = timed(reference, repeat=3) * stride
    # float32: edges summed over more paths (and `wte`'s over the model dimension) round
    # differently in the two orders of summation (up to ~1e-5 absolute here)
    same = _sampled(fast, stride).same_as(ref_graph, rtol=1e-4, atol=1e-5)
    sample = "every target unit" if stride == 1 else f"1/{stride} of target units, scaled"
    return [
        ("shape", f"{SMALL.name}, n_ctx {SMALL.n_ctx}, wte and output nodes"),
        ("nodes / edges per prompt", f"{fast.n_nodes} / {fast.n_edges}"),
        (f"reference (the app's definition; {sample}) s/prompt, median of 3", f"{ref_s:.2f}"),
        ("fast path, one prompt per call, s/prompt (median of 5)", f"{fast_s:.3f}"),
        ("fast path, 4 prompts per call, s/prompt (median of 3)", f"{batched_s:.3f}"),
        ("identical edges on the reference's targets (rtol 1e-4, atol 1e-5)", str(same)),
        (
            "batched graph identical to the one-prompt graph",
            str(batched.same_as(fast, rtol=1e-5, atol=1e-6)),
        ),
        ("speedup with one prompt per call", f"{ref_s / fast_s:.1f}"),
        ("FIGURE compute_speedup_spd_app", f"{ref_s / batched_s:.1f}"),
    ]


def mode_differences(n_prompts: int) -> list[tuple[str, str]]:
    """How far `spd_app` edges are from the other modes' on the demo run: edges present in both
    graphs (default CI threshold, no edge threshold), with `wte` and `output` nodes."""
    run = load_run(demo_run_path(), with_tokenizer=False)
    batch = torch.tensor(demo_prompts(n_prompts, n_ctx=32))
    options: dict[str, Any] = {"include_wte": True, "include_output": True, "attr_threshold": 0.0}
    graphs = {
        mode: compute_graphs(run, batch, mode=mode, **options)
        for mode in ("ci_masked", "target", "spd_app")
    }
    rows = [("demo prompts, n_ctx", f"{n_prompts}, 32")]
    for other in ("ci_masked", "target"):
        worst, worst_component, worst_key = 0.0, 0.0, None
        for app, theirs in zip(graphs["spd_app"], graphs[other], strict=True):
            a, b = _edge_map(app), _edge_map(theirs)
            for key in a.keys() & b.keys():
                diff = abs(a[key] - b[key])
                if diff > worst:
                    worst, worst_key = diff, key
                if "output" not in (key[0], key[3]) and "wte" not in (key[0], key[3]):
                    worst_component = max(worst_component, diff)
        rows.append((f"max |spd_app - {other}| over common edges", f"{worst:.4g} at {worst_key}"))
        rows.append(("  of which between components only", f"{worst_component:.4g}"))
    return rows


def _edge_map(graph: Graph) -> dict[tuple[object, ...], float]:
    e = graph.edge_arrays()
    return {
        key[:-1]: key[-1]
        for key in zip(
            e["source_layer"],
            e["source_pos"].tolist(),
            e["source_component"].tolist(),
            e["target_layer"],
            e["target_pos"].tolist(),
            e["target_component"].tolist(),
            e["value"].tolist(),
            strict=True,
        )
    }


def real_size(root: Path, device: str, n_prompts: int, batch: int) -> list[tuple[str, str]]:
    run = build_run(root, REAL, device)
    tokens = prompts(REAL, n_prompts, seed=2).to(run.device)
    compute_graphs(run, tokens[:batch])
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    n_edges = 0
    with backward_timer(device) as backward_s:
        for i in range(0, n_prompts, batch):
            n_edges += sum(g.n_edges for g in compute_graphs(run, tokens[i : i + batch]))
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    autograd, last = backward_s["autograd"], backward_s["components"]
    if device == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tag = "gpu" if device == "cuda" else "cpu"
    return [
        (
            "shape",
            f"{REAL.name}, shared_mlp {list(REAL.hidden)}, n_ctx {REAL.n_ctx}, "
            f"alive {alive_fraction(run, tokens[:2]):.1%}, {device}",
        ),
        ("prompts, batch", f"{n_prompts}, {batch}"),
        ("edges per prompt", f"{n_edges / n_prompts:.0f}"),
        ("s/prompt", f"{elapsed / n_prompts:.3f}"),
        ("of which autograd (to the sources' outputs), s/prompt", f"{autograd / n_prompts:.3f}"),
        ("of which to alive components (last product), s/prompt", f"{last / n_prompts:.3f}"),
        (f"peak memory MB ({'allocated' if tag == 'gpu' else 'process RSS'})", f"{peak_mb:.0f}"),
        ("RSS before, MB", f"{rss_before / 1024:.0f}"),
        (f"FIGURE compute_{tag}_prompts_per_s", f"{n_prompts / elapsed:.2f}"),
        (f"FIGURE compute_{tag}_peak_mb", f"{peak_mb:.0f}"),
        (
            "FIGURE compute_backward_share" + ("_gpu" if tag == "gpu" else ""),
            f"{(autograd + last) / elapsed:.2f}",
        ),
    ]


def print_gpu_kernels(run: LoadedRun, batch: int) -> None:
    """torch.profiler's table of one real-size batch: which kernels and copies take the time."""
    from torch.profiler import ProfilerActivity, profile

    tokens = prompts(REAL, batch, seed=3).to(run.device)
    compute_graphs(run, tokens)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as trace:
        compute_graphs(run, tokens)
        torch.cuda.synchronize()
    table = trace.key_averages().table(sort_by="self_cuda_time_total", row_limit=25)
    print(f"\ncompute: GPU kernels of one batch of {batch}\n{table}")


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    print(f"\n{title}")
    width = max(len(k) for k, _ in rows if not k.startswith("FIGURE"))
    for key, value in rows:
        if not key.startswith("FIGURE"):
            print(f"  {key:<{width}}  {value}")
    for key, value in rows:
        if key.startswith("FIGURE"):
            print(f"{key} {value}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer prompts, sparser reference")
    parser.add_argument(
        "--reference-stride",
        type=int,
        default=None,
        help="time the reference on 1/N of the target units and scale (default 8; quick 32; "
        "1 = the full reference, about 5 minutes on 2 cores)",
    )
    parser.add_argument("--skip-real", action="store_true", help="skip the CPU real-size figures")
    parser.add_argument(
        "--mode-differences",
        action="store_true",
        help="print how far spd_app edges are from the other modes' on the demo run",
    )
    parser.add_argument("--skip-speedup", action="store_true", help="only the real-size figures")
    parser.add_argument("--gpu-prompts", type=int, default=64, help="prompts timed on the GPU")
    parser.add_argument("--gpu-batch", type=int, default=16, help="prompts per forward on the GPU")
    parser.add_argument(
        "--profile", action="store_true", help="print where the GPU real-size time goes (cProfile)"
    )
    parser.add_argument(
        "--torch-profile", action="store_true", help="print the GPU kernels of one batch"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    keep_freed_memory()  # as locattr-generate's workers do
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        stride = args.reference_stride or (32 if args.quick else 8)
        if not args.skip_speedup:
            print_table("compute: fast path vs reference (CPU)", speedup(root / "small", stride))
            print_table(
                "compute: spd_app fast path vs its reference (CPU)",
                speedup_spd_app(root / "small_app", stride),
            )
        if args.mode_differences:
            print_table("compute: spd_app against the other modes (demo run)", mode_differences(4))
        if not args.skip_real:
            cpu_prompts = 1 if args.quick else 2
            print_table(
                "compute: real size (CPU)",
                real_size(root / "real", "cpu", cpu_prompts, cpu_prompts),
            )
        if torch.cuda.is_available():
            print_table(
                "compute: real size (GPU)",
                real_size(root / "gpu", "cuda", args.gpu_prompts, args.gpu_batch),
            )
            if args.profile:
                profile = cProfile.Profile()
                profile.runcall(real_size, root / "gpu2", "cuda", args.gpu_batch, args.gpu_batch)
                pstats.Stats(profile).sort_stats("tottime").print_stats(25)
            if args.torch_profile:
                print_gpu_kernels(build_run(root / "gpu3", REAL, "cuda"), args.gpu_batch)


if __name__ == "__main__":
    main()
