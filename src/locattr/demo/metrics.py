"""The demo's quality report: how faithful and how sparse the decomposition is on held-out text.

All figures are over every position of the held-out windows. A component is alive at a token
when its lower-leaky CI is >= `ALIVE_THRESHOLD` (the issue's definition).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from locattr.compute.component_model import CACHE_INPUTS, ComponentModel, ForwardPlan
from locattr.demo.train_spd import kl_to_target
from locattr.demo.train_target import next_token_loss

ALIVE_THRESHOLD = 0.1
N_TOP_COMPONENTS = 10
N_TOP_TOKENS = 5


@dataclass(frozen=True)
class TopToken:
    """`recall`: share of the component's firings on this token; `precision`: share of this
    token's occurrences where the component fires."""

    token: str
    recall: float
    precision: float


@dataclass(frozen=True)
class TopComponent:
    layer: str
    component: int
    firing_rate: float
    top_tokens: list[TopToken]


@dataclass(frozen=True)
class DemoMetrics:
    ci_masked_kl: float
    alive_fraction: dict[str, float]
    mean_alive_fraction: float
    max_alive_fraction: float
    alive_components: dict[str, int]
    target_loss: float
    unigram_loss: float
    n_tokens: int
    top_components: list[TopComponent]

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@torch.no_grad()
def decomposition_metrics(
    model: ComponentModel, windows: Int[Tensor, "n seq"], batch_size: int = 32
) -> tuple[float, dict[str, Tensor]]:
    """(CI-masked KL to the target in nats/token, per-layer lower-leaky CI `[n, seq, C]`).

    The masked forward has no weight delta: it is the forward attribution graphs are taken in.
    """
    kl_sum = 0.0
    cis: dict[str, list[Tensor]] = {path: [] for path in model.module_paths}
    for batch in windows.split(batch_size):
        cached = model(batch, CACHE_INPUTS)
        lower = model.lower_leaky_ci(cached.inputs)
        masked = model(batch, ForwardPlan(masks=lower))
        kl_sum += kl_to_target(masked.output, cached.output).item() * batch.numel()
        for path, ci in lower.items():
            cis[path].append(ci)
    return kl_sum / windows.numel(), {p: torch.cat(c) for p, c in cis.items()}


def unigram_loss(train: Int[Tensor, "n seq"], heldout: Int[Tensor, "m seq"], vocab: int) -> float:
    """Cross-entropy (nats/token) of held-out next tokens under add-one train unigram counts."""
    counts = torch.bincount(train.flatten(), minlength=vocab).double() + 1
    log_probs = (counts / counts.sum()).log()
    return -log_probs[heldout[:, 1:].flatten()].mean().item()


def top_components(
    cis: dict[str, Tensor], windows: Int[Tensor, "n seq"], vocab: list[str]
) -> list[TopComponent]:
    """The components alive at the most tokens, with the input tokens they fire on."""
    tokens = windows.flatten()
    token_counts = Counter(tokens.tolist())
    ranked: list[tuple[int, str, int]] = []
    for path, ci in cis.items():
        fires = (ci >= ALIVE_THRESHOLD).flatten(0, 1).sum(0)
        ranked.extend((int(n), path, c) for c, n in enumerate(fires.tolist()))
    ranked.sort(key=lambda r: (-r[0], r[1], r[2]))
    out: list[TopComponent] = []
    for n_fires, path, c in ranked[:N_TOP_COMPONENTS]:
        on = cis[path][..., c].flatten() >= ALIVE_THRESHOLD
        fired = Counter(tokens[on].tolist())
        top = [
            TopToken(vocab[t], round(k / max(1, n_fires), 4), round(k / token_counts[t], 4))
            for t, k in sorted(fired.items(), key=lambda kv: (-kv[1], kv[0]))[:N_TOP_TOKENS]
        ]
        out.append(TopComponent(path, c, round(n_fires / tokens.numel(), 4), top))
    return out


def evaluate(
    model: ComponentModel,
    heldout: Int[Tensor, "n seq"],
    train: Int[Tensor, "m seq"],
    vocab: list[str],
) -> DemoMetrics:
    kl, cis = decomposition_metrics(model, heldout)
    alive = {p: (ci >= ALIVE_THRESHOLD).float().mean().item() for p, ci in cis.items()}
    ever = {p: int((ci >= ALIVE_THRESHOLD).flatten(0, 1).any(0).sum()) for p, ci in cis.items()}
    with torch.no_grad():
        target_loss = next_token_loss(model.target_model, heldout).item()
    return DemoMetrics(
        ci_masked_kl=kl,
        alive_fraction=alive,
        mean_alive_fraction=sum(alive.values()) / len(alive),
        max_alive_fraction=max(alive.values()),
        alive_components=ever,
        target_loss=target_loss,
        unigram_loss=unigram_loss(train, heldout, len(vocab)),
        n_tokens=heldout.numel(),
        top_components=top_components(cis, heldout, vocab),
    )
