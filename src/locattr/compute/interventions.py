"""Interventions: the target model, the CI-masked component model and an intervened component
model on the same tokens, as log-probabilities, and what changed between the last two.

The CI-masked model is the one graphs are computed on (`compute_graph`'s `ci_masked` mode): every
decomposed module's component activations multiplied by their lower-leaky CI, no weight deltas.
An intervention changes those masks and nothing else: `ablate` zeroes the listed components,
`keep_only` zeroes every component but the listed ones (in every decomposed layer), each at the
given positions or at all of them. Ablating nothing therefore reproduces the CI-masked model, as
does keeping every component whose CI is not zero. Changes are measured against the CI-masked
model, which the intervention starts from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float, Int
from numpy.typing import NDArray
from torch import Tensor

from locattr.compute.component_model import ComponentModel, ForwardPlan, ForwardResult

InterventionMode = Literal["ablate", "keep_only"]
QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


@dataclass(frozen=True)
class Intervention:
    """Which components to ablate (or to keep alone), where.

    `components` maps a decomposed module path to component indices (each below its C);
    `positions` are token positions (each below the prompt's length), None for all of them.
    """

    mode: InterventionMode
    components: Mapping[str, Sequence[int]]
    positions: Sequence[int] | None = None


@dataclass(frozen=True)
class LogProbs:
    """Next-token log-probabilities of the three models, `[batch, seq, vocab]` each."""

    target: Float[Tensor, "batch seq vocab"]
    spd: Float[Tensor, "batch seq vocab"]
    intervened: Float[Tensor, "batch seq vocab"]


@dataclass(frozen=True)
class TopTokens:
    """Per position the `k` most probable next tokens, most probable first."""

    token_ids: Int[np.ndarray, "seq k"]
    probs: Float[np.ndarray, "seq k"]


@dataclass(frozen=True)
class PromptEffects:
    """One prompt's intervention, per position `s` (the prediction of token `s + 1`).

    `delta_logprob_next[s]`: intervened minus CI-masked log-probability of token `s + 1` (the
    token that actually follows), `seq - 1` long; `delta_logprob_top[s]`: the same for the
    target model's most probable token at `s`; `spd_top1` / `intervened_top1`: each model's
    most probable token.
    """

    target: TopTokens
    spd: TopTokens
    intervened: TopTokens
    delta_logprob_next: Float[np.ndarray, " seq_minus_1"]
    delta_logprob_top: Float[np.ndarray, " seq"]
    spd_top1: Int[np.ndarray, " seq"]
    intervened_top1: Int[np.ndarray, " seq"]


@dataclass(frozen=True)
class EffectSummary:
    """An intervention's effect on one prompt at some of its positions: the mean and the worst
    (most negative) change in log-probability of the next token (None where no position has a
    next token) and of the target's top token, and whether any position's top-1 token (of the
    CI-masked model) changed."""

    positions: tuple[int, ...]
    mean_delta_logprob_next: float | None
    worst_delta_logprob_next: float | None
    mean_delta_logprob_top: float | None
    worst_delta_logprob_top: float | None
    top1_changed: bool


@dataclass(frozen=True)
class Distribution:
    """`QUANTILES` (min, 5 %, 25 %, median, 75 %, 95 %, max) and the mean of `n` values."""

    n: int
    mean: float
    quantiles: tuple[float, ...]


@dataclass(frozen=True)
class EffectAggregate:
    """Summaries over prompts: distributions of their per-prompt values (None without any
    value), and the share of prompts whose top-1 token changed somewhere."""

    n_prompts: int
    mean_delta_logprob_next: Distribution | None
    worst_delta_logprob_next: Distribution | None
    mean_delta_logprob_top: Distribution | None
    share_top1_changed: float


def _forward(
    model: ComponentModel,
    tokens: Int[Tensor, "batch seq"],
    *,
    masks: Mapping[str, Tensor] | None = None,
    cache_inputs: bool = False,
) -> ForwardResult:
    """The one call of `ComponentModel.forward` in this module, so a change to its plan
    argument is made here only."""
    return model(tokens, ForwardPlan(masks=masks, cache_inputs=cache_inputs))


def intervened_masks(
    ci: Mapping[str, Float[Tensor, "batch seq C"]], intervention: Intervention
) -> dict[str, Float[Tensor, "batch seq C"]]:
    """The CI masks with the intervention applied (positions past the end are skipped)."""
    masks: dict[str, Tensor] = {}
    for path, values in ci.items():
        seq, width = values.shape[1], values.shape[2]
        where = torch.zeros(seq, dtype=torch.bool, device=values.device)
        if intervention.positions is None:
            where[:] = True
        else:
            chosen = [p for p in intervention.positions if 0 <= p < seq]
            where[torch.as_tensor(chosen, dtype=torch.long, device=values.device)] = True
        listed = torch.zeros(width, dtype=torch.bool, device=values.device)
        indices = intervention.components.get(path, ())
        listed[torch.as_tensor(list(indices), dtype=torch.long, device=values.device)] = True
        dropped = listed if intervention.mode == "ablate" else ~listed
        zeroed = where[:, None] & dropped[None, :]  # [seq, C]
        masks[path] = values.masked_fill(zeroed, 0.0)
    return masks


def intervention_log_probs(
    model: ComponentModel, token_ids: Int[Tensor, "batch seq"], intervention: Intervention
) -> LogProbs:
    """The three models' log-probabilities: one target forward (which also caches the inputs
    the CI comes from), then the CI-masked and the intervened forwards as one batch."""
    tokens = token_ids.to(model.device)
    batch = tokens.shape[0]
    with torch.inference_mode():
        target = _forward(model, tokens, cache_inputs=True)
        ci = model.lower_leaky_ci(target.inputs)
        changed = intervened_masks(ci, intervention)
        both = {path: torch.cat([ci[path], changed[path]]) for path in ci}
        masked = _forward(model, torch.cat([tokens, tokens]), masks=both).output
        return LogProbs(
            target=target.output.float().log_softmax(-1),
            spd=masked[:batch].float().log_softmax(-1),
            intervened=masked[batch:].float().log_softmax(-1),
        )


def _top(log_probs: Float[Tensor, "seq vocab"], k: int) -> TopTokens:
    values, ids = log_probs.topk(k, dim=-1)
    return TopTokens(token_ids=ids.cpu().numpy(), probs=values.exp().double().cpu().numpy())


def prompt_effects(
    log_probs: LogProbs, token_ids: Int[Tensor, "batch seq"], top_k: int
) -> list[PromptEffects]:
    """Per prompt of the batch: each model's top `top_k` tokens per position and the changes
    (`top_k` is cut to the vocabulary)."""
    k = min(top_k, log_probs.target.shape[-1])
    tokens = token_ids.to(log_probs.target.device)
    found = []
    for b in range(tokens.shape[0]):
        target, spd, intervened = log_probs.target[b], log_probs.spd[b], log_probs.intervened[b]
        delta = (intervened - spd).double()
        following = tokens[b, 1:, None]
        top = target.argmax(-1, keepdim=True)
        found.append(
            PromptEffects(
                target=_top(target, k),
                spd=_top(spd, k),
                intervened=_top(intervened, k),
                delta_logprob_next=delta[:-1].gather(-1, following).squeeze(-1).cpu().numpy(),
                delta_logprob_top=delta.gather(-1, top).squeeze(-1).cpu().numpy(),
                spd_top1=spd.argmax(-1).cpu().numpy(),
                intervened_top1=intervened.argmax(-1).cpu().numpy(),
            )
        )
    return found


def summarize(effects: PromptEffects, positions: Sequence[int]) -> EffectSummary:
    """The effect at `positions` (de-duplicated, sorted; those past the prompt are left out)."""
    seq = len(effects.delta_logprob_top)
    where = sorted({p for p in positions if 0 <= p < seq})
    nexts = effects.delta_logprob_next[[p for p in where if p < seq - 1]]
    tops = effects.delta_logprob_top[where]
    changed = effects.spd_top1[where] != effects.intervened_top1[where]
    return EffectSummary(
        positions=tuple(where),
        mean_delta_logprob_next=float(nexts.mean()) if len(nexts) else None,
        worst_delta_logprob_next=float(nexts.min()) if len(nexts) else None,
        mean_delta_logprob_top=float(tops.mean()) if len(tops) else None,
        worst_delta_logprob_top=float(tops.min()) if len(tops) else None,
        top1_changed=bool(changed.any()),
    )


def distribution(values: Sequence[float | None]) -> Distribution | None:
    """Mean and `QUANTILES` of the values that are not None (None when there are none)."""
    present: NDArray[np.float64] = np.array([v for v in values if v is not None], dtype=np.float64)
    if not len(present):
        return None
    quantiles = np.quantile(present, QUANTILES)
    return Distribution(len(present), float(present.mean()), tuple(float(q) for q in quantiles))


def aggregate(summaries: Sequence[EffectSummary]) -> EffectAggregate:
    """What an intervention did across prompts, from their summaries."""
    n = len(summaries)
    return EffectAggregate(
        n_prompts=n,
        mean_delta_logprob_next=distribution([s.mean_delta_logprob_next for s in summaries]),
        worst_delta_logprob_next=distribution([s.worst_delta_logprob_next for s in summaries]),
        mean_delta_logprob_top=distribution([s.mean_delta_logprob_top for s in summaries]),
        share_top1_changed=sum(s.top1_changed for s in summaries) / n if n else 0.0,
    )
