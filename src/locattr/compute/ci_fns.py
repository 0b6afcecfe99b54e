"""Causal-importance functions: small MLPs from a module's input to one pre-sigmoid per component.

All weights are stored `[in, out]` and applied as `x @ W + b` (not the `nn.Linear` layout), with
exact-erf GELU between layers, inside an `nn.Sequential` named `layers` so state-dict keys read
`layers.<k>.W` / `layers.<k>.b` with linear layers at even k.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn

from locattr.compute.config import CiFnType


class _Linear(nn.Module):
    """`x @ W + b`, shared by all components."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.empty(d_in, d_out))
        self.b = nn.Parameter(torch.empty(d_out))

    def forward(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_out"]:
        return x @ self.W + self.b


class _ParallelLinear(nn.Module):
    """One independent `x[..., c, :] @ W[c] + b[c]` per component c."""

    def __init__(self, C: int, d_in: int, d_out: int) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.empty(C, d_in, d_out))
        self.b = nn.Parameter(torch.empty(C, d_out))

    def forward(self, x: Float[Tensor, "... C d_in"]) -> Float[Tensor, "... C d_out"]:
        return torch.einsum("...ci,cio->...co", x, self.W) + self.b


def _sequential(linears: list[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, linear in enumerate(linears):
        if i:
            layers.append(nn.GELU())
        layers.append(linear)
    return nn.Sequential(*layers)


class MLPCiFn(nn.Module):
    """Per-component MLP on that component's own inner activation (a scalar)."""

    def __init__(self, C: int, hidden_dims: tuple[int, ...]) -> None:
        super().__init__()
        assert hidden_dims, "ci_fn_type 'mlp' needs at least one hidden layer"
        dims = (1, *hidden_dims, 1)
        self.layers = _sequential(
            [_ParallelLinear(C, a, b) for a, b in zip(dims, dims[1:], strict=False)]
        )

    def forward(self, inner_acts: Float[Tensor, "... C"]) -> Float[Tensor, "... C"]:
        return self.layers(inner_acts.unsqueeze(-1)).squeeze(-1)


class VectorMLPCiFn(nn.Module):
    """Per-component MLP on the whole module input (the same vector for every component)."""

    def __init__(self, C: int, d_in: int, hidden_dims: tuple[int, ...]) -> None:
        super().__init__()
        assert hidden_dims, "ci_fn_type 'vector_mlp' needs at least one hidden layer"
        self.C = C
        dims = (d_in, *hidden_dims, 1)
        self.layers = _sequential(
            [_ParallelLinear(C, a, b) for a, b in zip(dims, dims[1:], strict=False)]
        )

    def forward(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... C"]:
        first = self.layers[0]
        assert isinstance(first, _ParallelLinear)
        hidden = torch.einsum("...i,cio->...co", x, first.W) + first.b
        return self.layers[1:](hidden).squeeze(-1)


class SharedMLPCiFn(nn.Module):
    """One MLP shared by all components, its last layer emitting all C pre-sigmoids."""

    def __init__(self, C: int, d_in: int, hidden_dims: tuple[int, ...]) -> None:
        super().__init__()
        dims = (d_in, *hidden_dims, C)
        self.layers = _sequential([_Linear(a, b) for a, b in zip(dims, dims[1:], strict=False)])

    def forward(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... C"]:
        return self.layers(x)


CiFn = MLPCiFn | VectorMLPCiFn | SharedMLPCiFn


def make_ci_fn(kind: CiFnType, C: int, d_in: int, hidden_dims: tuple[int, ...]) -> CiFn:
    """The CI function for one module; `d_in` is the module input width (unused for `mlp`)."""
    match kind:
        case "mlp":
            return MLPCiFn(C, hidden_dims)
        case "vector_mlp":
            return VectorMLPCiFn(C, d_in, hidden_dims)
        case "shared_mlp":
            return SharedMLPCiFn(C, d_in, hidden_dims)
