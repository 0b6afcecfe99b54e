"""Low-rank components that stand in for one decomposed module (SPD's V, U and bias)."""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn


class LinearComponents(nn.Module):
    """C rank-one pieces of a linear map: weight `(V @ U).T`, shape `[d_out, d_in]`.

    `bias` is a buffer equal to the target layer's bias, present only when the target has one.
    """

    def __init__(self, d_in: int, d_out: int, C: int, bias: Tensor | None) -> None:
        super().__init__()
        self.C = C
        self.V = nn.Parameter(torch.empty(d_in, C))
        self.U = nn.Parameter(torch.empty(C, d_out))
        self.bias: Tensor | None
        if bias is not None:
            self.register_buffer("bias", bias.detach().clone())
        else:
            self.bias = None

    def inner_acts(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... C"]:
        return x @ self.V

    def output(self, acts: Float[Tensor, "... C"]) -> Float[Tensor, "... d_out"]:
        out = acts @ self.U
        return out if self.bias is None else out + self.bias

    def weight(self) -> Float[Tensor, "d_out d_in"]:
        return (self.V @ self.U).T

    def delta_output(
        self, x: Float[Tensor, "... d_in"], weight_delta: Float[Tensor, "d_out d_in"]
    ) -> Float[Tensor, "... d_out"]:
        return x @ weight_delta.T


class EmbeddingComponents(nn.Module):
    """C rank-one pieces of an embedding table: weight `V @ U`, shape `[vocab, dim]`."""

    def __init__(self, vocab_size: int, embedding_dim: int, C: int) -> None:
        super().__init__()
        self.C = C
        self.V = nn.Parameter(torch.empty(vocab_size, C))
        self.U = nn.Parameter(torch.empty(C, embedding_dim))
        self.bias = None

    def inner_acts(self, token_ids: Int[Tensor, ...]) -> Float[Tensor, "... C"]:
        return self.V[token_ids]

    def output(self, acts: Float[Tensor, "... C"]) -> Float[Tensor, "... dim"]:
        return acts @ self.U

    def weight(self) -> Float[Tensor, "vocab dim"]:
        return self.V @ self.U

    def delta_output(
        self, token_ids: Int[Tensor, ...], weight_delta: Float[Tensor, "vocab dim"]
    ) -> Float[Tensor, "... dim"]:
        return weight_delta[token_ids]


Components = LinearComponents | EmbeddingComponents
