"""Pieces shared by the SimpleStories target architectures."""

from __future__ import annotations

from typing import Any

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
        if self.std is None:  # one fused op: its backward is one op too, batched backward included
            return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)
        centred = x - x.mean(-1, keepdim=True)
        return centred / self.std * self.weight + self.bias


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


class _SavedSlope(torch.autograd.Function):
    """An elementwise activation whose backward multiplies by the slope saved in the forward.

    Autograd's own backward recomputes the slope from the input for every gradient, so a
    batched backward of hundreds of rows computed hundreds of tanh (or sigmoid) passes; this
    one computes it once.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, kind: str) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        ones = torch.ones_like(x)
        if kind == "gelu":
            return F.gelu(x, approximate="tanh"), torch.ops.aten.gelu_backward(
                ones, x, approximate="tanh"
            )
        return F.silu(x), torch.ops.aten.silu_backward(ones, x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, str], output: tuple[Tensor, Tensor]) -> None:
        ctx.save_for_backward(output[1])
        ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx: Any, grad: Tensor, _: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (slope,) = ctx.saved_tensors
        return grad * slope, None


def _activation(x: Tensor, kind: str) -> Tensor:
    if not torch.is_grad_enabled() or not x.requires_grad:
        return F.gelu(x, approximate="tanh") if kind == "gelu" else F.silu(x)
    return _SavedSlope.apply(x, kind)[0]


def silu(x: Tensor) -> Tensor:
    """SiLU, with a batched backward that costs one product per row."""
    return _activation(x, "silu")


class NewGELU(nn.Module):
    """The tanh-approximation GELU used by the target MLPs (not the CI functions' erf GELU),
    with a batched backward that costs one product per row."""

    def forward(self, x: Tensor) -> Tensor:
        return _activation(x, "gelu")


def merge_heads(x: Float[Tensor, "batch seq head hd"]) -> Float[Tensor, "batch seq d"]:
    return x.flatten(2)


def split_heads(x: Float[Tensor, "batch seq d"], n_head: int) -> Float[Tensor, "batch seq head hd"]:
    return x.unflatten(-1, (n_head, -1))
