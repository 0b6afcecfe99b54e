"""The SPD sigmoid variants that turn CI-function outputs into causal importances."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from locattr.compute.config import SigmoidType

ALPHA = 0.01
_SWISH_BETA = 10.0

SigmoidFn = Callable[[Tensor], Tensor]


class _LowerLeakyHard(torch.autograd.Function):
    """clamp(x, 0, 1) whose backward leaks alpha*g below 0 only when g pushes x upward."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return x.clamp(0.0, 1.0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        below = (x <= 0) & (grad < 0)
        inside = (x > 0) & (x <= 1)
        return torch.where(inside, grad, torch.where(below, ALPHA * grad, torch.zeros_like(grad)))


def lower_leaky_hard(x: Tensor) -> Tensor:
    return _LowerLeakyHard.apply(x)  # type: ignore[no-any-return]


def upper_leaky_hard(x: Tensor) -> Tensor:
    return torch.where(x > 1, 1 + ALPHA * (x - 1), x.clamp(0.0, 1.0))


def leaky_hard(x: Tensor) -> Tensor:
    return torch.where(x > 0, x.clamp(max=1.0), ALPHA * x)


def hard(x: Tensor) -> Tensor:
    return x.clamp(0.0, 1.0)


def _swish(u: Tensor) -> Tensor:
    return u * torch.sigmoid(_SWISH_BETA * u)


def _upside_down_swish(u: Tensor) -> Tensor:
    return u * torch.sigmoid(-_SWISH_BETA * u)


def swish_hard(x: Tensor) -> Tensor:
    z = x - 0.5
    return (
        0.5 + (_upside_down_swish(z - 0.5) - _swish(z)) + (_swish(z + 0.5) - _upside_down_swish(z))
    )


def ci_functions(sigmoid_type: SigmoidType) -> tuple[SigmoidFn, SigmoidFn]:
    """(lower, upper): `lower` gives the CI used for masks and thresholds."""
    match sigmoid_type:
        case "leaky_hard":
            return lower_leaky_hard, upper_leaky_hard
        case "normal":
            return torch.sigmoid, torch.sigmoid
        case "hard":
            return hard, hard
        case "upper_leaky_hard":
            return upper_leaky_hard, upper_leaky_hard
        case "lower_leaky_hard":
            return lower_leaky_hard, lower_leaky_hard
        case "swish_hard":
            return swish_hard, swish_hard
