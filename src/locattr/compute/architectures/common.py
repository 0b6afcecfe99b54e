"""Pieces shared by the SimpleStories target architectures."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn


class LayerNorm(nn.Module):
    """LayerNorm with biased variance; a fixed `std` (LN-ablated runs) replaces the statistic."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps
        self.std: float | None = None

    def forward(self, x: Float[Tensor, "... d"]) -> Float[Tensor, "... d"]:
        centred = x - x.mean(-1, keepdim=True)
        if self.std is None:
            denom = torch.sqrt(centred.pow(2).mean(-1, keepdim=True) + self.eps)
        else:
            denom = torch.tensor(self.std, dtype=x.dtype, device=x.device)
        return centred / denom * self.weight + self.bias


class RMSNorm(nn.Module):
    """RMSNorm computed in at least float32, cast back to the input dtype."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Float[Tensor, "... d"]) -> Float[Tensor, "... d"]:
        wide = x.to(torch.promote_types(x.dtype, torch.float32))
        normed = wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.to(x.dtype) * self.weight


class NewGELU(nn.Module):
    """The tanh-approximation GELU used by the target MLPs (not the CI functions' erf GELU)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, approximate="tanh")


def causal_attention(
    q: Float[Tensor, "batch seq head hd"],
    k: Float[Tensor, "batch seq head hd"],
    v: Float[Tensor, "batch seq head hd"],
) -> Float[Tensor, "batch seq head hd"]:
    """Masked-softmax attention scaled by 1/sqrt(head_dim), heads kept in the third dim.

    Written out rather than through SDPA, whose CPU backward has no batching rule, so batched
    (vmapped) backward passes stay fast: einsums on the [batch, seq, head, hd] layout need no
    head transposes, the scale sits on q (outside the k/v -> output backward), and the causal
    mask is an additive constant, whose backward is free (masked_fill's is a full pass).
    """
    seq = q.shape[1]
    blocked = torch.full((seq, seq), float("-inf"), dtype=q.dtype, device=q.device).triu(1)
    scores = torch.einsum("bshd,bthd->bhst", q * (1 / math.sqrt(q.shape[-1])), k) + blocked
    return torch.einsum("bhst,bthd->bshd", scores.softmax(-1), v)


def merge_heads(x: Float[Tensor, "batch seq head hd"]) -> Float[Tensor, "batch seq d"]:
    return x.flatten(2)


def split_heads(x: Float[Tensor, "batch seq d"], n_head: int) -> Float[Tensor, "batch seq head hd"]:
    return x.unflatten(-1, (n_head, -1))
