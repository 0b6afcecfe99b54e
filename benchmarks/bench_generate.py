"""Generation benchmark: `locattr.generate` end to end, and where its wall time goes.

Run as `python -m benchmarks.bench_generate [--quick]`. Prints a table and `FIGURE` lines:
- demo model, CPU: `generate_cpu_prompts_per_s_1w` / `_2w` (1 and 2 worker processes, prompts
  stored per second of worker time after loading) and `generate_db_time_share` (fraction of the
  worker's wall time not covered by compute, i.e. waiting for the database; the writer thread's
  own busy share is printed beside it), against the original's per-prompt algorithm
  (one backward per alive target unit, `tests.compute.reference`) on the same prompts;
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


def worker_rate(result: GenerateResult) -> float:
    """Prompts stored per second of the slowest worker's time after loading the model."""
    return result.added / max(r.wall_s for r in result.reports)


def cpu_demo(root: Path, n_prompts: int, n_ctx: int) -> Rows:
    rows: Rows = []
    results = {}
    for workers in (1, 2):
        options = GenerateOptions(
            model="demo",
            output=str(root / f"demo-{workers}w.db"),
            n_prompts=n_prompts,
            n_ctx=n_ctx,
            batch_size=8,
            device="cpu",
            n_workers=workers,
            context_windows=64,
        )
        results[workers] = result = generate(options)
        rows += [
            (f"{workers} worker(s): command wall s", f"{result.wall_s:.1f}"),
            (f"{workers} worker(s): prompts/s (worker time)", f"{worker_rate(result):.2f}"),
            (f"{workers} worker(s): db wait share", f"{result.db_wait_share:.3f}"),
            (f"{workers} worker(s): writer thread busy share", f"{result.db_busy_share:.3f}"),
        ]
    run = load_run(demo_run_path(), with_tokenizer=False)
    sample = demo_prompts(2, n_ctx, seed=0)
    start = time.perf_counter()
    for ids in sample:
        reference_graph(run, ids, structure=run.structure)
    reference_s = (time.perf_counter() - start) / len(sample)
    ours_s = 1 / worker_rate(results[1])
    rows += [
        ("shape", f"demo model, n_ctx {n_ctx}, {n_prompts} prompts, batch 8, torch threads 2"),
        ("original per-unit algorithm (compute only) s/prompt", f"{reference_s:.3f}"),
        ("locattr-generate (compute + storage) s/prompt", f"{ours_s:.3f}"),
        ("FIGURE generate_speedup_vs_original", f"{reference_s / ours_s:.1f}"),
        ("FIGURE generate_cpu_prompts_per_s_1w", f"{worker_rate(results[1]):.2f}"),
        ("FIGURE generate_cpu_prompts_per_s_2w", f"{worker_rate(results[2]):.2f}"),
        ("FIGURE generate_db_time_share", f"{results[1].db_wait_share:.3f}"),
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
        ("with storage: prompts/s (worker time)", f"{worker_rate(result):.2f}"),
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
