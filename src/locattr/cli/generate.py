"""`locattr-generate`: build or extend a database of attribution graphs (argument parsing only)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from locattr.cli.words import plural
from locattr.errors import LocattrError
from locattr.graph import ATTRIBUTION_MODES


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="locattr-generate",
        description="Compute local attribution graphs for many prompts and store them, with the "
        "inverted index (component -> prompts where it fires). Rerunning the same command "
        "resumes: prompts already stored are skipped.",
    )
    p.add_argument(
        "--model",
        "--wandb_path",
        required=True,
        help="`demo`, an SPD run directory, a model_<step>.pth file, or "
        "wandb:entity/project/runs/ID",
    )
    p.add_argument(
        "--output",
        "--output_path",
        default=os.environ.get("LOCATTR_DB"),
        help="SQLite path or SQLAlchemy URL (default $LOCATTR_DB)",
    )
    p.add_argument(
        "--n-prompts",
        "--n_prompts",
        type=int,
        default=100,
        help="how many prompts the database should hold (default 100)",
    )
    p.add_argument(
        "--n-ctx",
        "--n_ctx",
        type=int,
        default=None,
        help="tokens per prompt (default 64, or the model's context where that is shorter)",
    )
    p.add_argument(
        "--n-blocks",
        "--n_blocks",
        type=int,
        default=None,
        metavar="N",
        help="decompose and attribute only the first N transformer blocks' layers; later blocks "
        "run as the target model (default: every decomposed layer)",
    )
    p.add_argument("--seed", type=int, default=0, help="which windows of the corpus (default 0)")
    p.add_argument(
        "--ci-threshold",
        "--ci_threshold",
        type=float,
        default=1e-6,
        help="a component is alive at a position when its CI reaches this (1e-6)",
    )
    p.add_argument(
        "--attr-threshold",
        "--attr_threshold",
        type=float,
        default=1e-4,
        help="edges with |value| below this are not stored (1e-4)",
    )
    p.add_argument("--batch-size", type=int, default=4, help="prompts per forward pass (default 4)")
    p.add_argument(
        "--device",
        default="auto",
        help="auto (cuda:i for worker i when a GPU is visible, else cpu), cpu, cuda or cuda:i",
    )
    p.add_argument(
        "--n-gpus",
        "--n_gpus",
        type=int,
        default=1,
        help="worker processes, one per GPU (worker i on cuda:i; CPU processes when there is no "
        "GPU); prompts are dealt out by index (default 1)",
    )
    p.add_argument(
        "--shard",
        default="1/1",
        metavar="K/N",
        help="take the K-th of N disjoint slices of the prompts (one per machine, e.g. a SLURM "
        "array task); --n-prompts stays the total over all shards",
    )
    p.add_argument(
        "--prompts-file",
        type=Path,
        default=None,
        help='JSONL, one {"text": ...} or {"token_ids": [...]} per line; activation contexts '
        "are then computed over the same prompts",
    )
    p.add_argument(
        "--dataset",
        default=None,
        help="HF dataset name or local path (default: the run's task_config.dataset_name)",
    )
    p.add_argument("--split", default=None, help="dataset split (default: the run's train split)")
    p.add_argument(
        "--column", default=None, help="text column (default: the run's task_config.column_name)"
    )
    p.add_argument(
        "--streaming",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="stream the dataset instead of downloading it whole (default: the run's setting)",
    )
    p.add_argument(
        "--context-windows",
        type=int,
        default=512,
        help="windows the activation contexts are computed over, taken before the prompts' "
        "windows so the two never overlap (default 512; 0 skips them)",
    )
    p.add_argument("--no-graphs", action="store_true", help="store only the inverted index")
    p.add_argument(
        "--no-inputs",
        action="store_true",
        help="leave the token-embedding input nodes (layer `wte`) out of the graphs",
    )
    p.add_argument(
        "--no-outputs",
        action="store_true",
        help="leave the output nodes (layer `output`, one per likely next token) out of the graphs",
    )
    p.add_argument(
        "--output-prob-threshold",
        type=_probability,
        default=0.01,
        metavar="P",
        help="a token is an output node where its predicted probability reaches this (0.01)",
    )
    p.add_argument(
        "--mode",
        choices=ATTRIBUTION_MODES,
        default="ci_masked",
        help="graph definition: ci_masked (the original's: CI-masked forward, direct edges), "
        "target (the target model, direct edges) or spd_app (the SPD app's: target model with "
        "paths through the weight deltas, outputs by the CI-masked model); default ci_masked",
    )
    p.add_argument(
        "--value-precision",
        default="1e-6",
        metavar="STEP",
        help="store edge values to within STEP / 2 (default 1e-6: the original's 6 decimals, "
        "2/3 to 3/4 of float32's bytes), or exactly with float32 (or float16)",
    )
    return p


def _probability(text: str) -> float:
    """An argparse type: a float in (0, 1] (a threshold of 0 would make every token a node)."""
    message = f"expected a probability in (0, 1], e.g. 0.01, not {text!r}"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(message) from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(message)
    return value


INTERRUPTED = "interrupted: rerun the same command to resume"


def main(argv: list[str] | None = None) -> None:
    """Console entry point: a user error prints one line and exits 2, Ctrl-C one line and 130
    (the shell's code for SIGINT), never a traceback."""
    # A process started in the background by a non-interactive shell (a job script, CI)
    # inherits SIGINT ignored, and Python then keeps ignoring it: Ctrl-C must always stop us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _main(argv)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)


def _main(argv: list[str] | None) -> None:
    args = parser().parse_args(argv)
    from locattr.cli.progress import progress_display  # torch loads after --help
    from locattr.generate import DatasetChoice, GenerateOptions, Shard, generate
    from locattr.generate.options import DEFAULT_N_CTX, parse_value_precision

    if not args.output:
        parser().error("give --output PATH_OR_URL (or set LOCATTR_DB)")
    if args.n_prompts < 1 or args.batch_size < 1 or args.n_gpus < 1 or args.context_windows < 0:
        parser().error(
            "--n-prompts, --batch-size and --n-gpus must be at least 1, --context-windows at "
            "least 0"
        )
    try:
        shard = Shard.parse(args.shard)
        value_precision = parse_value_precision(args.value_precision)
    except LocattrError as error:
        parser().error(str(error))
    try:
        options = GenerateOptions(
            model=args.model,
            output=args.output,
            n_prompts=args.n_prompts,
            n_ctx=args.n_ctx,
            n_blocks=args.n_blocks,
            seed=args.seed,
            ci_threshold=args.ci_threshold,
            attr_threshold=args.attr_threshold,
            batch_size=args.batch_size,
            device=args.device,
            n_workers=args.n_gpus,
            shard=shard,
            prompts_file=args.prompts_file,
            dataset=DatasetChoice(args.dataset, args.split, args.column, args.streaming),
            keep_graphs=not args.no_graphs,
            context_windows=args.context_windows,
            include_inputs=not args.no_inputs,
            include_outputs=not args.no_outputs,
            output_prob_threshold=args.output_prob_threshold,
            mode=args.mode,
            value_precision=value_precision,
        )
    except LocattrError as error:  # settings that do not fit together
        parser().error(str(error))
    try:
        with progress_display("locattr-generate") as show:
            result = generate(options, show)
    except LocattrError as error:
        print(f"locattr-generate: error: {error}", file=sys.stderr)
        sys.exit(2)
    per_worker = ", ".join(map(str, result.per_worker))
    n_ctx = f"n_ctx {result.n_ctx}"
    if result.n_ctx_from_model:
        n_ctx += f" (the model's context: the default {DEFAULT_N_CTX} does not fit)"
    print(
        f"{options.output}: {plural(result.added, 'prompt')} added (per worker: {per_worker}), "
        f"{result.skipped} already stored (shard {options.shard}), {n_ctx}, "
        f"{result.wall_s:.1f} s"
    )


if __name__ == "__main__":
    main()
