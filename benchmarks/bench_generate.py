"""Generation benchmark: `locattr.generate` end to end, and where its wall time goes.

Run as `python -m benchmarks.bench_generate [--quick]`. Prints a table and `FIGURE` lines:
- demo model, CPU, after an untimed warm-up build (one-time costs would land on whichever
  configuration ran first), with 1 worker and the process's torch threads (`_1w`, what
  `locattr-generate` runs), 1 worker and one thread (`_1w_1t`) and 2 workers of one thread each
  (`_2w`): `generate_cpu_prompts_per_s_*`, prompts stored per second of the workers' wall time
  (from the workers' start, after loading, to the last one's end), and
  `generate_cpu_prompts_per_worker_s_*`, the same over the number of workers (prompts per
  worker-second; `_1w_1t` and `_2w` compare like with like: each worker one thread); and
  `generate_db_time_share` (fraction of the worker's wall time not covered by compute, i.e.
  waiting for the database; the writer thread's own busy share is printed beside it), against
  the original's per-prompt algorithm (one backward per alive target unit,
  `tests.compute.reference`) on the same prompts;
- with CUDA: the compute benchmark's real-size run (C 1200, n_ctx 64) on one GPU, with storage
  (`generate_gpu_prompts_per_s`) and compute alone (`generate_gpu_compute_prompts_per_s`), and
  the GPU utilisation sampled while storing (`generate_gpu_utilisation`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.compute.reference import reference_graph  # noqa: E402

from benchmarks.bench_compute import REAL, print_table, prompts, write_calibrated_run  # noqa: E402
from locattr.compute import compute_graphs, load_run  # noqa: E402
from locattr.demo import demo_prompts, demo_run_path  # noqa: E402
from locattr.generate import GenerateOptions, GenerateResult, generate  # noqa: E402

Rows = list[tuple[str, str]]


def workers_wall_s(result: GenerateResult) -> float:
    """The workers' wall time: they run side by side, so the phase lasts as long as the slowest
    worker's own wall clock (from its start, after loading the model, to its end)."""
    return max(r.wall_s for r in result.reports)


def worker_rate(result: GenerateResult) -> float:
    """Prompts stored per second of the workers' wall time."""
    return result.added / workers_wall_s(result)


def per_worker_rate(result: GenerateResult) -> float:
    """Prompts stored per worker-second: `worker_rate` over the number of workers."""
    return worker_rate(result) / len(result.reports)


DEFINITIONS: Rows = [
    ("command wall s", "the whole call: loading, activation contexts, workers, index packing"),
    ("workers' wall s", "from the workers' start (after loading) to the last one's end"),
    ("prompts/s (command wall)", "prompts added / command wall s"),
    ("prompts/s (workers' wall)", "prompts added / workers' wall s"),
    ("prompts per worker-second", "prompts added / (workers x workers' wall s)"),
    ("threads", "torch threads per worker (n workers get cores // n each)"),
]


def demo_options(output: Path, n_prompts: int, n_ctx: int, workers: int) -> GenerateOptions:
    return GenerateOptions(
        model="demo",
        output=str(output),
        n_prompts=n_prompts,
        n_ctx=n_ctx,
        batch_size=8,
        device="cpu",
        n_workers=workers,
        context_windows=64,
    )


def cpu_demo(root: Path, n_prompts: int, n_ctx: int) -> Rows:
    """1 worker with the process's torch threads (what `locattr-generate` does), 1 worker with
    one thread, 2 workers (one thread each on 2 cores): the last two compare like with like."""
    rows: Rows = [(f"definition: {name}", meaning) for name, meaning in DEFINITIONS]
    generate(demo_options(root / "warm-up.db", 8, n_ctx, 1))
    own_threads = torch.get_num_threads()
    results: dict[str, GenerateResult] = {}
    for name, workers, threads in [
        ("1w", 1, own_threads),
        ("1w_1t", 1, 1),
        ("2w", 2, max((os.cpu_count() or 1) // 2, 1)),
    ]:
        torch.set_num_threads(threads if workers == 1 else own_threads)
        try:
            result = generate(demo_options(root / f"demo-{name}.db", n_prompts, n_ctx, workers))
        finally:
            torch.set_num_threads(own_threads)
        results[name] = result
        label = f"{workers} worker(s), {threads} thread(s) each"
        rows += [
            (f"{label}: command wall s", f"{result.wall_s:.1f}"),
            (f"{label}: workers' wall s", f"{workers_wall_s(result):.2f}"),
            (f"{label}: prompts/s (command wall)", f"{result.added / result.wall_s:.2f}"),
            (f"{label}: prompts/s (workers' wall)", f"{worker_rate(result):.2f}"),
            (f"{label}: prompts per worker-second", f"{per_worker_rate(result):.2f}"),
            (f"{label}: prompts per worker", ", ".join(map(str, result.per_worker))),
            (f"{label}: db wait share", f"{result.db_wait_share:.3f}"),
            (f"{label}: writer thread busy share", f"{result.db_busy_share:.3f}"),
        ]
    run = load_run(demo_run_path(), with_tokenizer=False)
    sample = demo_prompts(2, n_ctx, seed=0)
    start = time.perf_counter()
    for ids in sample:
        reference_graph(run, ids, structure=run.structure)
    reference_s = (time.perf_counter() - start) / len(sample)
    ours_s = 1 / worker_rate(results["1w"])
    rows += [
        ("shape", f"demo model, n_ctx {n_ctx}, {n_prompts} prompts, batch 8"),
        ("original per-unit algorithm (compute only) s/prompt", f"{reference_s:.3f}"),
        ("locattr-generate (compute + storage) s/prompt", f"{ours_s:.3f}"),
        ("FIGURE generate_speedup_vs_original", f"{reference_s / ours_s:.1f}"),
        *(
            (f"FIGURE generate_cpu_prompts_per_s_{name}", f"{worker_rate(result):.2f}")
            for name, result in results.items()
        ),
        *(
            (f"FIGURE generate_cpu_prompts_per_worker_s_{name}", f"{per_worker_rate(result):.2f}")
            for name, result in results.items()
        ),
        ("FIGURE generate_db_time_share", f"{results['1w'].db_wait_share:.3f}"),
    ]
    return rows


@contextmanager
def gpu_utilisation() -> Iterator[list[float]]:
    """Samples of GPU utilisation (percent, nvidia-smi every 0.2 s) while the context is open."""
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            result = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode == 0 and result.stdout.strip():
                samples.append(float(result.stdout.split()[0]))
            stop.wait(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def gpu_real_size(root: Path, n_prompts: int, batch: int) -> Rows:
    run_dir = write_calibrated_run(root, REAL)
    tokens = prompts(REAL, n_prompts, seed=5)
    prompts_file = root / "prompts.jsonl"
    prompts_file.write_text(
        "\n".join(orjson.dumps({"token_ids": t}).decode() for t in tokens.tolist())
    )
    run = load_run(run_dir, "cuda", with_tokenizer=False)
    compute_graphs(run, tokens[:batch].cuda())  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    n_edges = 0
    for i in range(0, n_prompts, batch):
        n_edges += sum(g.n_edges for g in compute_graphs(run, tokens[i : i + batch].cuda()))
    compute_rate = n_prompts / (time.perf_counter() - start)
    del run
    torch.cuda.empty_cache()
    options = GenerateOptions(
        model=str(run_dir),
        output=str(root / "gpu.db"),
        n_prompts=n_prompts,
        n_ctx=REAL.n_ctx,
        batch_size=batch,
        device="cuda",
        prompts_file=prompts_file,
    )
    with gpu_utilisation() as utilisation:
        result = generate(options)
    busy = sum(utilisation) / max(len(utilisation), 1)
    return [
        ("shape", f"{REAL.name}, n_ctx {REAL.n_ctx}, {n_prompts} prompts, batch {batch}"),
        ("edges per prompt", f"{n_edges / n_prompts:.0f}"),
        ("compute only: prompts/s", f"{compute_rate:.2f}"),
        ("with storage: prompts/s (workers' wall)", f"{worker_rate(result):.2f}"),
        ("with storage: db wait share", f"{result.db_wait_share:.3f}"),
        ("with storage: writer thread busy share", f"{result.db_busy_share:.3f}"),
        ("with storage: activation contexts s", f"{result.contexts_s:.1f}"),
        ("GPU utilisation while storing, mean of samples %", f"{busy:.0f} ({len(utilisation)})"),
        ("FIGURE generate_gpu_compute_prompts_per_s", f"{compute_rate:.2f}"),
        ("FIGURE generate_gpu_prompts_per_s", f"{worker_rate(result):.2f}"),
        ("FIGURE generate_gpu_utilisation", f"{busy / 100:.2f}"),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer prompts")
    parser.add_argument("--skip-cpu", action="store_true", help="only the GPU figures")
    parser.add_argument("--gpu-prompts", type=int, default=128, help="prompts on the GPU")
    parser.add_argument("--gpu-batch", type=int, default=16, help="prompts per forward on the GPU")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if not args.skip_cpu:
            n = 32 if args.quick else 128
            print_table("generate: demo model, CPU", cpu_demo(root, n, 32))
        if torch.cuda.is_available():
            print_table(
                "generate: real-size run, one GPU",
                gpu_real_size(root / "gpu", args.gpu_prompts, args.gpu_batch),
            )


if __name__ == "__main__":
    main()
