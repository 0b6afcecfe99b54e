"""`python -m locattr.demo.build`: regenerate the demo run from seeds and report its quality.

Writes `<out>/tokenizer/`, `<out>/pretrain/` (the target's pretrain run) and `<out>/spd/` (the
SPD run, with `metrics.json`). The SPD config names the other two by paths relative to the run,
so the directory can be moved (and shipped as package data) as a whole.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from locattr.compute.config import SPDConfig
from locattr.demo.metrics import ALIVE_THRESHOLD, DemoMetrics, evaluate
from locattr.demo.tokenizer import build_tokenizer, save_tokenizer, tokenizer_vocab
from locattr.demo.train_spd import (
    SPDTrainConfig,
    build_component_model,
    spd_config_dict,
    train_spd,
    write_spd_run,
)
from locattr.demo.train_target import (
    TargetTrainConfig,
    model_config,
    train_target,
    write_pretrain_run,
)
from locattr.demo.windows import corpus_windows

N_CTX = 64
DEFAULT_OUT = Path(__file__).parent / "run"


@dataclass(frozen=True)
class BuildConfig:
    seed: int = 0
    n_ctx: int = N_CTX
    n_train_windows: int = 8000
    n_heldout_windows: int = 128
    target: TargetTrainConfig = TargetTrainConfig()
    spd: SPDTrainConfig = SPDTrainConfig()


def build(out: Path, config: BuildConfig, log_every: int = 100) -> DemoMetrics:
    """Build everything under `out` (replacing its three subdirectories) and return the metrics."""
    for name in ("tokenizer", "pretrain", "spd"):
        shutil.rmtree(out / name, ignore_errors=True)
    tokenizer = build_tokenizer()
    save_tokenizer(tokenizer, out / "tokenizer")
    vocab = tokenizer_vocab(tokenizer)
    train = corpus_windows(tokenizer, "train", config.n_train_windows, config.n_ctx, config.seed)
    heldout = corpus_windows(
        tokenizer, "heldout", config.n_heldout_windows, config.n_ctx, config.seed
    )

    target_train = replace(config.target, seed=config.seed)
    target = train_target(
        train, model_config(len(vocab), config.n_ctx), target_train, log_every=2 * log_every
    )
    write_pretrain_run(out / "pretrain", target, target_train, out / "tokenizer")

    spd_train = replace(config.spd, seed=config.seed)
    spd_dict = spd_config_dict(spd_train, "../pretrain", "../tokenizer", config.n_ctx)
    # Components are initialised from torch's global generator, which `train_target` seeded.
    model = build_component_model(target, SPDConfig.model_validate(spd_dict))
    train_spd(model, train, spd_train, log_every=log_every)
    write_spd_run(out / "spd", model, spd_dict, spd_train.steps)

    metrics = evaluate(model, heldout, train, vocab)
    record = {
        **metrics.to_json(),
        "alive_threshold": ALIVE_THRESHOLD,
        "heldout": {"split": "heldout", "seed": config.seed, "n_windows": heldout.shape[0],
                    "n_ctx": config.n_ctx},
        "build": asdict(config),
    }  # fmt: skip
    (out / "spd" / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    return metrics


def format_report(metrics: DemoMetrics) -> str:
    lines = [
        f"held-out tokens: {metrics.n_tokens}",
        f"CI-masked KL to target: {metrics.ci_masked_kl:.4f} nats/token (goal <= 0.05)",
        f"alive per token at CI >= {ALIVE_THRESHOLD}: mean over layers "
        f"{100 * metrics.mean_alive_fraction:.2f} %, worst layer "
        f"{100 * metrics.max_alive_fraction:.2f} % (goal <= 10 %)",
    ]
    for layer, fraction in metrics.alive_fraction.items():
        lines.append(
            f"  {layer:<18} {100 * fraction:6.2f} %   "
            f"({metrics.alive_components[layer]} components ever alive)"
        )
    lines.append(
        f"target loss {metrics.target_loss:.4f} nats/token vs unigram baseline "
        f"{metrics.unigram_loss:.4f}"
    )
    lines.append("10 most-used components (token: share of firings / precision):")
    for comp in metrics.top_components:
        tokens = ", ".join(f"{t.token!r} {t.recall:.2f}/{t.precision:.2f}" for t in comp.top_tokens)
        lines.append(
            f"  {comp.layer}:{comp.component:<4} fires on {100 * comp.firing_rate:5.1f} %  {tokens}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Regenerate the locattr demo run from seeds and report its quality."
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, help="SPD steps (default: the shipped run's)")
    parser.add_argument("--target-steps", type=int, help="target-model training steps")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (reruns are bit-identical at a fixed thread count; default 1)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = BuildConfig(seed=args.seed)
    if args.steps is not None:
        config = replace(config, spd=replace(config.spd, steps=args.steps))
    if args.target_steps is not None:
        config = replace(config, target=replace(config.target, steps=args.target_steps))
    start = time.perf_counter()
    metrics = build(args.out, config)
    print(format_report(metrics))
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
