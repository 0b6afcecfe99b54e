"""A compact SPD trainer for the demo target, writing a run in the exact SPD format.

Losses (SPD's, goodfire-ai/spd): faithfulness (components' weights reproduce the target's),
importance minimality (L_p of the upper-leaky CI, p annealed down so few components stay on),
stochastic reconstruction (KL from the target to the model masked with `ci + (1 - ci) * U(0,1)`
plus the weight delta under a per-position uniform mask) and CI-masked reconstruction (KL with
the CI itself as the mask and no delta, which is the forward attribution graphs use).

The model trained is `locattr.compute`'s own `ComponentModel`, so the checkpoint has exactly the
state-dict layout the loader reads: `target_model.*`, `_components.<path-with-dashes>.{V,U}`,
`_ci_fns.<path-with-dashes>.layers.<k>.{W,b}`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from jaxtyping import Float, Int
from torch import Tensor, nn

from locattr.compute.architectures.llama_simple import LlamaSimpleMLP
from locattr.compute.component_model import CACHE_INPUTS, ComponentModel, DeltaTerm, ForwardPlan
from locattr.compute.config import SPDConfig
from locattr.demo.train_target import CLASS_PATH

MODULE_PATTERNS = ("h.*.attn.*_proj", "h.*.mlp.c_fc", "h.*.mlp.down_proj")


@dataclass(frozen=True)
class SPDTrainConfig:
    C: int = 128
    ci_fn_type: str = "shared_mlp"
    ci_fn_hidden_dims: tuple[int, ...] = (64,)
    steps: int = 800
    batch_size: int = 16
    lr: float = 2e-3
    lr_warmup_frac: float = 0.02
    faithfulness_coeff: float = 1e3
    importance_minimality_coeff: float = 1e-2
    pnorm: float = 2.0
    p_anneal_start_frac: float = 0.0
    p_anneal_final_p: float = 0.5
    p_anneal_end_frac: float = 0.8
    importance_eps: float = 1e-12
    stochastic_recon_coeff: float = 1.0
    ci_masked_recon_coeff: float = 1.0
    seed: int = 0


def spd_config_dict(
    train: SPDTrainConfig, pretrained: str, tokenizer: str, n_ctx: int
) -> dict[str, Any]:
    """`final_config.yaml` with the field names of SPD's `Config` (Dec-2025 layout)."""
    return {
        "wandb_project": None,
        "wandb_run_name": None,
        "seed": train.seed,
        "C": train.C,
        "n_mask_samples": 1,
        "ci_fn_type": train.ci_fn_type,
        "ci_fn_hidden_dims": list(train.ci_fn_hidden_dims),
        "sampling": "continuous",
        "sigmoid_type": "leaky_hard",
        "target_module_patterns": list(MODULE_PATTERNS),
        "identity_module_patterns": None,
        "use_delta_component": True,
        "loss_metric_configs": [
            {"classname": "FaithfulnessLoss", "coeff": train.faithfulness_coeff},
            {
                "classname": "ImportanceMinimalityLoss",
                "coeff": train.importance_minimality_coeff,
                "pnorm": train.pnorm,
                "p_anneal_start_frac": train.p_anneal_start_frac,
                "p_anneal_final_p": train.p_anneal_final_p,
                "p_anneal_end_frac": train.p_anneal_end_frac,
                "eps": train.importance_eps,
            },
            {"classname": "StochasticReconLoss", "coeff": train.stochastic_recon_coeff},
            {"classname": "CIMaskedReconLoss", "coeff": train.ci_masked_recon_coeff},
        ],
        "output_loss_type": "kl",
        "lr": train.lr,
        "steps": train.steps,
        "batch_size": train.batch_size,
        "gradient_accumulation_steps": 1,
        "lr_schedule": "cosine",
        "lr_exponential_halflife": None,
        "lr_warmup_pct": train.lr_warmup_frac,
        "save_freq": None,
        "eval_freq": train.steps,
        "train_log_freq": 100,
        "pretrained_model_class": CLASS_PATH,
        "pretrained_model_path": None,
        "pretrained_model_name": pretrained,
        "pretrained_model_output_attr": "idx_0",
        "tokenizer_name": tokenizer,
        "task_config": {
            "task_name": "lm",
            "max_seq_len": n_ctx,
            "buffer_size": 1000,
            "dataset_name": "locattr.demo.corpus",
            "column_name": "story",
            "train_data_split": "train",
            "eval_data_split": "heldout",
            "shuffle_each_epoch": True,
            "is_tokenized": False,
            "streaming": False,
        },
    }


def _init_params(model: ComponentModel) -> None:
    """Kaiming-style normal init of V, U and the CI functions (SPD inits them independently of
    the target; faithfulness pulls `V @ U` onto the target weights)."""
    for name, param in model.named_parameters():
        if name.startswith("target_model."):
            continue
        if name.endswith(".b"):
            nn.init.zeros_(param)
        elif name.endswith(".V"):
            nn.init.normal_(param, std=1 / math.sqrt(param.shape[0]))
        else:  # U [C, d_out] and CI-function W [.., in, out]: fan-in is the second-last axis
            nn.init.normal_(param, std=1 / math.sqrt(param.shape[-2]))


def build_component_model(target: LlamaSimpleMLP, config: SPDConfig) -> ComponentModel:
    """A trainable component model around a frozen copy-free target (hooks are added to it)."""
    target.requires_grad_(False)
    model = ComponentModel(target, config)
    _init_params(model)
    return model


def current_p(train: SPDTrainConfig, step: int) -> float:
    """SPD's p annealing: `pnorm` until the start fraction, linear to the final p at the end."""
    frac = step / max(1, train.steps)
    if frac <= train.p_anneal_start_frac:
        return train.pnorm
    if frac >= train.p_anneal_end_frac:
        return train.p_anneal_final_p
    t = (frac - train.p_anneal_start_frac) / (train.p_anneal_end_frac - train.p_anneal_start_frac)
    return train.pnorm + t * (train.p_anneal_final_p - train.pnorm)


def kl_to_target(
    logits: Float[Tensor, "batch seq vocab"], target_logits: Float[Tensor, "batch seq vocab"]
) -> Tensor:
    """KL(target || model) in nats, summed over the vocabulary, averaged over positions."""
    log_q = logits.log_softmax(-1)
    log_p = target_logits.log_softmax(-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean()


def faithfulness_loss(weight_deltas: Mapping[str, Tensor]) -> Tensor:
    """Mean squared entry of `W_target - W_components` over all decomposed weights."""
    deltas = weight_deltas.values()
    return sum(d.pow(2).sum() for d in deltas) / sum(d.numel() for d in deltas)  # type: ignore[return-value]


def importance_minimality_loss(
    upper: Mapping[str, Float[Tensor, "batch seq C"]], p: float, eps: float
) -> Tensor:
    """Sum over layers of the per-token L_p^p of the upper-leaky CI, averaged over tokens."""
    return sum((ci + eps).pow(p).sum(-1).mean() for ci in upper.values())  # type: ignore[return-value]


def _stochastic_masks(lower: Mapping[str, Tensor], generator: torch.Generator) -> dict[str, Tensor]:
    return {
        path: ci + (1 - ci) * torch.rand(ci.shape, generator=generator)
        for path, ci in lower.items()
    }


def spd_step_losses(
    model: ComponentModel,
    tokens: Int[Tensor, "batch seq"],
    train: SPDTrainConfig,
    p: float,
    generator: torch.Generator,
) -> dict[str, Tensor]:
    """Every loss term of one step (unweighted), plus `total` (weighted)."""
    with torch.no_grad():
        cached = model(tokens, CACHE_INPUTS)
    target_logits = cached.output
    lower, upper = model.causal_importances(cached.inputs)
    weight_deltas = model.weight_deltas()
    delta_masks = {
        path: DeltaTerm(delta, torch.rand(tokens.shape, generator=generator))
        for path, delta in weight_deltas.items()
    }
    stochastic = model(
        tokens, ForwardPlan(masks=_stochastic_masks(lower, generator), deltas=delta_masks)
    )
    ci_masked = model(tokens, ForwardPlan(masks=lower))
    losses = {
        "faithfulness": faithfulness_loss(weight_deltas),
        "importance_minimality": importance_minimality_loss(upper, p, train.importance_eps),
        "stochastic_recon": kl_to_target(stochastic.output, target_logits),
        "ci_masked_recon": kl_to_target(ci_masked.output, target_logits),
    }
    losses["total"] = (
        train.faithfulness_coeff * losses["faithfulness"]
        + train.importance_minimality_coeff * losses["importance_minimality"]
        + train.stochastic_recon_coeff * losses["stochastic_recon"]
        + train.ci_masked_recon_coeff * losses["ci_masked_recon"]
    )
    return losses  # type: ignore[return-value]


def _lr_at(train: SPDTrainConfig, step: int) -> float:
    warmup = int(train.lr_warmup_frac * train.steps)
    if step < warmup:
        return train.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, train.steps - warmup)
    return train.lr * 0.5 * (1 + math.cos(math.pi * progress))


def train_spd(
    model: ComponentModel,
    train_windows: Int[Tensor, "n seq"],
    train: SPDTrainConfig,
    log_every: int = 100,
) -> None:
    """Optimise the components and CI functions in place (the target stays frozen)."""
    torch.manual_seed(train.seed)
    generator = torch.Generator().manual_seed(train.seed)
    params = [p for n, p in model.named_parameters() if not n.startswith("target_model.")]
    for param in params:
        param.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=train.lr, weight_decay=0.0)
    for step in range(train.steps):
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(train, step)
        index = torch.randint(0, train_windows.shape[0], (train.batch_size,), generator=generator)
        p = current_p(train, step)
        losses = spd_step_losses(model, train_windows[index], train, p, generator)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        if log_every and (step % log_every == 0 or step == train.steps - 1):
            terms = "  ".join(f"{k} {v.item():.4g}" for k, v in losses.items())
            print(f"  spd step {step:5d}  p {p:.2f}  {terms}", flush=True)
    model.requires_grad_(False)
    model.eval()


def write_spd_run(
    directory: Path, model: ComponentModel, config: dict[str, Any], steps: int
) -> Path:
    """`final_config.yaml` and `model_<steps>.pth` (the full component-model state dict)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "final_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    checkpoint = directory / f"model_{steps}.pth"
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, checkpoint)
    return checkpoint
