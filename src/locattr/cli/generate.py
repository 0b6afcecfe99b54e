"""`locattr-generate`: build or extend a database of attribution graphs (argument parsing only)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from locattr.errors import LocattrError


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
        "--n-ctx", "--n_ctx", type=int, default=32, help="tokens per prompt (default 32)"
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
    p.add_argument("--batch-size", type=int, default=4, help="prompts per forward (default 4)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    p.add_argument(
        "--prompts-file",
        type=Path,
        default=None,
        help='JSONL, one {"text": ...} or {"token_ids": [...]} per line',
    )
    p.add_argument("--no-graphs", action="store_true", help="store only the inverted index")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    from locattr.generate import GenerateOptions, generate  # torch loads after --help

    if not args.output:
        parser().error("give --output PATH_OR_URL (or set LOCATTR_DB)")
    if args.n_prompts < 1 or args.batch_size < 1:
        parser().error("--n-prompts and --batch-size must be at least 1")
    options = GenerateOptions(
        model=args.model,
        output=args.output,
        n_prompts=args.n_prompts,
        n_ctx=args.n_ctx,
        seed=args.seed,
        ci_threshold=args.ci_threshold,
        attr_threshold=args.attr_threshold,
        batch_size=args.batch_size,
        device=args.device,
        prompts_file=args.prompts_file,
        keep_graphs=not args.no_graphs,
    )
    start = time.monotonic()

    def progress(done: int, total: int) -> None:
        rate = done / max(time.monotonic() - start, 1e-9)
        print(f"{done}/{total} prompts ({rate:.2f}/s)", file=sys.stderr, flush=True)

    try:
        added = generate(options, progress)
    except LocattrError as error:
        print(f"locattr-generate: error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"{options.output}: {added} prompts added")


if __name__ == "__main__":
    main()
