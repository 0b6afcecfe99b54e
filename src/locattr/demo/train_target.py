"""Train the demo's target model (the built-in LlamaSimpleMLP) and write it as a pretrain run.

A pretrain run as simple_stories_train writes one: `model_config.yaml` (the architecture
fields), `final_config.yaml` (the pretraining config), `model_step_<N>.pt` (the state dict) and
`tokenizer.json`. The SPD run names this directory; the compute loader reads its
`model_config.yaml` to rebuild the architecture.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from jaxtyping import Int
from torch import Tensor, nn

from locattr.compute.architectures.llama_simple import LlamaSimpleMLP, LlamaSimpleMLPConfig

CLASS_PATH = "simple_stories_train.models.llama_simple_mlp.LlamaSimpleMLP"


@dataclass(frozen=True)
class TargetTrainConfig:
    steps: int = 1500
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    seed: int = 0


def model_config(vocab_size: int, n_ctx: int) -> LlamaSimpleMLPConfig:
    """About 2 layers, d_model 64, 4 heads sharing 2 key/value heads: small enough for a CPU."""
    return LlamaSimpleMLPConfig(
        block_size=n_ctx,
        vocab_size=vocab_size,
        n_layer=2,
        n_head=4,
        n_embd=64,
        n_intermediate=256,
        n_key_value_heads=2,
        rotary_dim=16,
        n_ctx=n_ctx,
        flash_attention=False,
    )


def _init(model: nn.Module) -> None:
    # GPT-2 style small init; the default N(0, 1) embedding would give huge tied logits.
    for name, param in model.named_parameters():
        if param.ndim == 2:
            nn.init.normal_(param, std=0.02 if "wte" in name else 0.05)


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warmup, then cosine decay to a tenth of the peak."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def next_token_loss(model: nn.Module, windows: Int[Tensor, "batch seq"]) -> Tensor:
    """Mean cross-entropy (nats/token) of predicting each token from its prefix."""
    logits, _ = model(windows[:, :-1])
    return nn.functional.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten())


def train_target(
    train: Int[Tensor, "n seq"],
    config: LlamaSimpleMLPConfig,
    train_config: TargetTrainConfig,
    log_every: int = 250,
) -> LlamaSimpleMLP:
    """Next-token training on random batches of `train` windows (deterministic in the seed)."""
    torch.manual_seed(train_config.seed)
    model = LlamaSimpleMLP(config)
    _init(model)
    generator = torch.Generator().manual_seed(train_config.seed)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=train_config.lr,
        betas=(0.9, 0.95),
        weight_decay=train_config.weight_decay,
    )
    for step in range(train_config.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(
                step, train_config.steps, train_config.lr, train_config.warmup_steps
            )
        index = torch.randint(0, train.shape[0], (train_config.batch_size,), generator=generator)
        loss = next_token_loss(model, train[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if log_every and (step % log_every == 0 or step == train_config.steps - 1):
            print(f"  target step {step:5d}  loss {loss.item():.4f}", flush=True)
    model.eval()
    model.requires_grad_(False)
    return model


def write_pretrain_run(
    directory: Path,
    model: LlamaSimpleMLP,
    train_config: TargetTrainConfig,
    tokenizer_dir: Path,
) -> None:
    """`model_config.yaml`, `final_config.yaml`, `model_step_<steps>.pt`, `tokenizer.json`."""
    directory.mkdir(parents=True, exist_ok=True)
    fields: dict[str, Any] = model.config.model_dump()
    (directory / "model_config.yaml").write_text(yaml.safe_dump(fields, sort_keys=False))
    pretrain_config = {
        "model_id": "locattr-demo-llama_simple_mlp-2L",
        "model_class": CLASS_PATH,
        "enable_ln_ablation": False,
        "train_dataset_config": {
            "name": "locattr.demo.corpus",
            "tokenizer_file_path": "tokenizer.json",
            "n_ctx": model.config.n_ctx,
        },
        **asdict(train_config),
    }
    (directory / "final_config.yaml").write_text(yaml.safe_dump(pretrain_config, sort_keys=False))
    torch.save(model.state_dict(), directory / f"model_step_{train_config.steps}.pt")
    shutil.copyfile(tokenizer_dir / "tokenizer.json", directory / "tokenizer.json")
