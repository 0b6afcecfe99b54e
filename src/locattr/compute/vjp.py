"""The batched backward pass shared by structure probes and attribution."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


def batched_grad(
    seeded: Tensor, leaves: list[Tensor], seeds: Float[Tensor, "rows ..."]
) -> tuple[Tensor, ...]:
    """One vector-Jacobian product per leading row of `seeds`.

    `torch.func.vmap` rather than `is_grads_batched` (the legacy vmap), which runs softmax and
    masked-fill backward once per row in a Python-level loop and ignores the batching of
    custom autograd functions (the built-in attention's backward relies on it).
    """

    def vjp(seed: Tensor) -> tuple[Tensor, ...]:
        return torch.autograd.grad(seeded, leaves, grad_outputs=seed, retain_graph=True)

    return torch.func.vmap(vjp)(seeds)
