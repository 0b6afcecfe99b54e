"""Causal attention for the built-in architectures, with a backward made for batched gradients.

Attribution runs many backward passes at once (`torch.func.vmap` over rows of seeds). A row that
crosses positions seeds one target position t per prompt, and from t the gradient reaches only
query row t of the attention pattern. Autograd's backward computes every query row for every
row of seeds regardless: [rows, head, seq, seq] work where [rows, head, seq] is all there is. The
backward here checks for such rows and then works on row t alone; rows that seed several
positions take the dense path, the same products autograd would form.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor


def causal_attention(
    q: Float[Tensor, "batch seq head hd"],
    k: Float[Tensor, "batch seq head hd"],
    v: Float[Tensor, "batch seq head hd"],
) -> Float[Tensor, "batch seq head hd"]:
    """Masked-softmax attention scaled by 1/sqrt(head_dim), heads kept in the third dim.

    Written out rather than through SDPA, whose CPU backward has no batching rule; einsums on
    the [batch, seq, head, hd] layout need no head transposes.
    """
    if not torch.is_grad_enabled() or not (q.requires_grad or k.requires_grad or v.requires_grad):
        return _attend(q * _scale(q), k, v)[0]
    return _CausalAttention.apply(q, k, v)[0]


def _scale(q: Tensor) -> float:
    return 1 / math.sqrt(q.shape[-1])


def _attend(
    scaled_q: Tensor, k: Tensor, v: Tensor
) -> tuple[Float[Tensor, "batch seq head hd"], Float[Tensor, "batch head seq seq"]]:
    seq = scaled_q.shape[1]
    blocked = torch.full((seq, seq), float("-inf"), dtype=k.dtype, device=k.device).triu(1)
    probs = (torch.einsum("bshd,bthd->bhst", scaled_q, k) + blocked).softmax(-1)
    return torch.einsum("bhst,bthd->bshd", probs, v), probs


class _CausalAttention(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        return _attend(q * _scale(q), k, v)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, ...], output: tuple[Tensor, ...]) -> None:
        q, k, v = inputs
        ctx.scale = _scale(q)
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(q * ctx.scale, k, v, output[1])

    @staticmethod
    def backward(ctx: Any, grad: Tensor, _: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        return _AttentionGrads.apply(grad, *ctx.saved_tensors, ctx.scale)


class _AttentionGrads(torch.autograd.Function):
    """The gradients of attention's inputs, with a batching rule of its own (`vmap`)."""

    @staticmethod
    def forward(
        grad: Tensor, scaled_q: Tensor, k: Tensor, v: Tensor, probs: Tensor, scale: float
    ) -> tuple[Tensor, ...]:  # type: ignore[override]
        return tuple(g[0] for g in attention_grads(grad[None], scaled_q, k, v, probs, scale))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, ...], output: tuple[Tensor, ...]) -> None:
        pass

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None, ...], grad: Tensor, *saved: Any) -> Any:  # type: ignore[override]
        if in_dims[0] is None or any(dim is not None for dim in in_dims[1:]):
            grads = torch.vmap(_dense_grads, in_dims=in_dims)(grad, *saved)
            return grads, (0, 0, 0)
        return attention_grads(grad.movedim(in_dims[0], 0), *saved), (0, 0, 0)


def attention_grads(
    grad: Float[Tensor, "rows batch seq head hd"],
    scaled_q: Float[Tensor, "batch seq head hd"],
    k: Float[Tensor, "batch seq head hd"],
    v: Float[Tensor, "batch seq head hd"],
    probs: Float[Tensor, "batch head seq seq"],
    scale: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of (q, k, v) for each row of output gradients (q was scaled by `scale`).

    When every row has gradient at one position per prompt at most, only that query row of the
    pattern takes part: outer products give k's and v's gradients, and q's is zero elsewhere.
    """
    rows, batch, seq, heads, hd = grad.shape
    active = grad.flatten(-2).abs().amax(-1) > 0  # [rows, batch, seq]
    if active.numel() == 0 or int(active.sum(-1).max()) > 1:
        return _dense_grads(grad, scaled_q, k, v, probs, scale)
    position = active.to(torch.uint8).argmax(-1)  # [rows, batch]; a row without any is all zero
    prompt = torch.arange(batch, device=grad.device)
    at = position[..., None, None, None].expand(rows, batch, 1, heads, hd)
    grad_at = grad.gather(2, at).squeeze(2)  # [rows, batch, head, hd]
    probs_at = probs.transpose(1, 2)[prompt, position]  # [rows, batch, head, seq]
    grad_v = probs_at.transpose(2, 3).contiguous()[..., None] * grad_at[:, :, None]
    grad_probs = torch.einsum("rbhd,bthd->rbht", grad_at, v)
    grad_scores = probs_at * (grad_probs - (grad_probs * probs_at).sum(-1, keepdim=True))
    query = scaled_q[prompt, position]  # [rows, batch, head, hd]
    grad_k = grad_scores.transpose(2, 3).contiguous()[..., None] * query[:, :, None]
    grad_q = grad.new_zeros(grad.shape)
    grad_q_at = torch.einsum("rbht,bthd->rbhd", grad_scores, k).mul_(scale)
    grad_q.scatter_(2, at, grad_q_at[:, :, None])
    return grad_q, grad_k, grad_v


def _dense_grads(
    grad: Tensor, scaled_q: Tensor, k: Tensor, v: Tensor, probs: Tensor, scale: float
) -> tuple[Tensor, Tensor, Tensor]:
    """The products autograd forms, over leading rows."""
    grad_probs = torch.einsum("...bshd,bthd->...bhst", grad, v)
    grad_v = torch.einsum("bhst,...bshd->...bthd", probs, grad)
    grad_scores = probs * (grad_probs - (grad_probs * probs).sum(-1, keepdim=True))
    grad_k = torch.einsum("...bhst,bshd->...bthd", grad_scores, scaled_q)
    grad_q = torch.einsum("...bhst,bthd->...bshd", grad_scores, k).mul_(scale)
    return grad_q, grad_k, grad_v
