"""Causal attention for the built-in architectures, with a backward made for batched gradients.

Attribution runs many backward passes at once (`torch.func.vmap` over rows of seeds). A row that
crosses positions seeds one target position t per prompt, and from t the gradient reaches only
query row t of the attention pattern. Autograd's backward computes every query row for every
row of seeds regardless: [rows, head, seq, seq] work where [rows, head, seq] is all there is. The
backward here checks for such rows and then works on row t alone; rows that seed several
positions take the dense path, the same products autograd would form.

Under `diagonal_gradients()` the forward is unchanged but its backward passes k and v only the
gradient of their own position's query: gradients then never leave a position, and for causal
models the Jacobian's position-diagonal blocks are exactly the full model's (a product of
block-lower-triangular matrices has the product of their diagonal blocks as its diagonal).
Graphs that keep only same-position edges but let gradients through attention (the SPD app's)
then seed every position in one backward row.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
import torch._C._functorch as _functorch
from jaxtyping import Float
from torch import Tensor

_DIAGONAL: ContextVar[bool] = ContextVar("diagonal_attention_gradients", default=False)


@contextmanager
def diagonal_gradients() -> Iterator[None]:
    """Attention computed inside takes the diagonal backward (read when the forward runs, so
    it holds for that graph's backward wherever it runs)."""
    token = _DIAGONAL.set(True)
    try:
        yield
    finally:
        _DIAGONAL.reset(token)


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
    if _DIAGONAL.get():
        return _DiagonalAttention.apply(q, k, v)[0]
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
    def backward(ctx: Any, grad: Tensor, _: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        with_q = bool(ctx.needs_input_grad[0])
        scaled_q, k, v, probs = ctx.saved_tensors
        saved = (scaled_q, k, v, probs)
        rows = _vmapped_rows(grad, saved)
        if rows is not None:
            physical, row_dim, level = rows
            grads, dims = attention_grads(physical.movedim(row_dim, 0), *saved, ctx.scale, with_q)
            grads = tuple(
                _functorch._add_batch_dim(g, dim, level) for g, dim in zip(grads, dims, strict=True)
            )
        elif _FUNCTORCH_INTERNALS and _functorch.maybe_get_level(grad) == -1:  # one plain row
            grads, dims = attention_grads(grad[None], *saved, ctx.scale, with_q)
            grads = tuple(g.select(dim, 0) for g, dim in zip(grads, dims, strict=True))
        else:  # nested transforms: autograd's products, batched op by op
            grads = _dense_grads(grad, *saved, ctx.scale, with_q)
        return grads if with_q else (None, *grads)


class _DiagonalAttention(_CausalAttention):
    """The same forward; k and v take only the gradient of their own position's query."""

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, ...], output: tuple[Tensor, ...]) -> None:
        q, k, v = inputs
        out, probs = output
        ctx.scale = _scale(q)
        ctx.mark_non_differentiable(probs)
        ctx.save_for_backward(*_query_sums(out, probs, q * ctx.scale, k, v, ctx.scale))

    @staticmethod
    def backward(ctx: Any, grad: Tensor, _: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        with_q = bool(ctx.needs_input_grad[0])
        own_prob, own_q, v_minus_out, to_q = ctx.saved_tensors
        saved = (own_prob, own_q, v_minus_out, to_q)
        rows = _vmapped_rows(grad, saved)
        if rows is not None:
            physical, row_dim, level = rows
            grads = _diagonal_grads(physical.movedim(row_dim, 0), *saved, with_q=with_q)
            grads = tuple(_functorch._add_batch_dim(g, 0, level) for g in grads)
        else:
            grads = _diagonal_grads(grad, *saved, with_q=with_q)
        return grads if with_q else (None, *grads)


_FUNCTORCH_INTERNALS = all(
    hasattr(_functorch, name)
    for name in (
        "is_batchedtensor",
        "get_unwrapped",
        "maybe_get_level",
        "maybe_get_bdim",
        "_add_batch_dim",
    )
)
"""The private functorch calls this backward relies on to tell batched rows from a plain one;
without them it always takes the generic path (correct, slower)."""


def _vmapped_rows(grad: Tensor, saved: tuple[Tensor, ...]) -> tuple[Tensor, int, int] | None:
    """(rows as a plain tensor, their dimension, the vmap level) when `grad` is batched by one
    `vmap` level over plain saved tensors: the batched backward of attribution. The rows are then
    handled as one tensor, not op by op through functorch (whose own hook for this, a custom
    `vmap` rule, cost ~1 ms per call in Python)."""
    if not _FUNCTORCH_INTERNALS or not _functorch.is_batchedtensor(grad):
        return None
    physical = _functorch.get_unwrapped(grad)
    if any(_functorch.maybe_get_level(t) != -1 for t in (physical, *saved)):
        return None
    return physical, _functorch.maybe_get_bdim(grad), _functorch.maybe_get_level(grad)


def attention_grads(
    grad: Float[Tensor, "rows batch seq head hd"],
    scaled_q: Float[Tensor, "batch seq head hd"],
    k: Float[Tensor, "batch seq head hd"],
    v: Float[Tensor, "batch seq head hd"],
    probs: Float[Tensor, "batch head seq seq"],
    scale: float,
    with_q: bool = True,
) -> tuple[tuple[Tensor, ...], tuple[int, ...]]:
    """Gradients of (q if `with_q`, k, v) for each row of output gradients (q was scaled by
    `scale`), and the dimension of each that holds the rows.

    When every row has gradient at one position per prompt at most, only that query row of the
    pattern takes part: outer products give k's and v's gradients, laid out [batch, seq, rows,
    head, hd] so that projecting them per position needs no copy; q's is zero elsewhere.
    """
    rows, batch, seq, heads, hd = grad.shape
    active = grad.flatten(-2).ne(0).any(-1)  # [rows, batch, seq]
    if active.numel() == 0 or int(active.sum(-1).max()) > 1:
        grads = _dense_grads(grad, scaled_q, k, v, probs, scale, with_q)
        return grads, (0,) * len(grads)
    position = active.to(torch.uint8).argmax(-1)  # [rows, batch]; a row without any is all zero
    prompt = torch.arange(batch, device=grad.device)
    at = position[..., None, None, None].expand(rows, batch, 1, heads, hd)
    grad_at = grad.gather(2, at).squeeze(2)  # [rows, batch, head, hd]
    probs_at = probs.transpose(1, 2)[prompt, position]  # [rows, batch, head, seq]
    grad_probs = torch.einsum("rbhd,bthd->rbht", grad_at, v)
    grad_scores = probs_at * (grad_probs - (grad_probs * probs_at).sum(-1, keepdim=True))
    query = scaled_q[prompt, position]  # [rows, batch, head, hd]
    grad_v, grad_k = _outer(probs_at, grad_at), _outer(grad_scores, query)
    if not with_q:
        return (grad_k, grad_v), (2, 2)
    grad_q = grad.new_zeros(grad.shape)
    grad_q_at = torch.einsum("rbht,bthd->rbhd", grad_scores, k).mul_(scale)
    grad_q.scatter_(2, at, grad_q_at[:, :, None])
    return (grad_q, grad_k, grad_v), (0, 2, 2)


def _outer(
    weight: Float[Tensor, "rows batch head seq"], vector: Float[Tensor, "rows batch head hd"]
) -> Float[Tensor, "batch seq rows head hd"]:
    """[batch, seq, rows * head, 1] * [batch, 1, rows * head, hd] (rows and heads as one
    dimension: the broadcast product runs ~2.5x faster on CPU than with them apart)."""
    rows, batch, heads, seq = weight.shape
    flat_weight = weight.permute(1, 3, 0, 2).reshape(batch, seq, rows * heads, 1)
    flat_vector = vector.transpose(0, 1).reshape(batch, 1, rows * heads, -1)
    return (flat_weight * flat_vector).view(batch, seq, rows, heads, -1)


def _dense_grads(
    grad: Tensor,
    scaled_q: Tensor,
    k: Tensor,
    v: Tensor,
    probs: Tensor,
    scale: float,
    with_q: bool = True,
) -> tuple[Tensor, ...]:
    """The products autograd forms, over leading rows."""
    grad_probs = torch.einsum("...bshd,bthd->...bhst", grad, v)
    grad_v = torch.einsum("bhst,...bshd->...bthd", probs, grad)
    grad_scores = probs * (grad_probs - (grad_probs * probs).sum(-1, keepdim=True))
    grad_k = torch.einsum("...bhst,bshd->...bthd", grad_scores, scaled_q)
    if not with_q:
        return grad_k, grad_v
    grad_q = torch.einsum("...bhst,bthd->...bshd", grad_scores, k).mul_(scale)
    return grad_q, grad_k, grad_v


def _query_sums(
    out: Float[Tensor, "batch seq head hd"],
    probs: Float[Tensor, "batch head seq seq"],
    scaled_q: Float[Tensor, "batch seq head hd"],
    k: Float[Tensor, "batch seq head hd"],
    v: Float[Tensor, "batch seq head hd"],
    scale: float,
) -> tuple[Tensor, ...]:
    """Per query s and head, what the diagonal backward needs (see `_diagonal_grads`)."""
    own_prob = probs.diagonal(dim1=-2, dim2=-1).transpose(1, 2)[..., None]  # [b, s, h, 1]
    k_bar = torch.einsum("bhst,bthd->bshd", probs, k)
    vk = torch.einsum("bhst,bthed->bshed", probs, v[..., :, None] * k[..., None, :])
    to_q = (vk - out[..., :, None] * k_bar[..., None, :]).mul_(scale)
    return own_prob, own_prob * scaled_q, v - out, to_q


def _diagonal_grads(
    grad: Float[Tensor, "... batch seq head hd"],
    own_prob: Float[Tensor, "batch seq head 1"],
    own_q: Float[Tensor, "batch seq head hd"],
    v_minus_out: Float[Tensor, "batch seq head hd"],
    to_q: Float[Tensor, "batch seq head hd hd"],
    with_q: bool = True,
) -> tuple[Tensor, ...]:
    """k's and v's gradients at position t from query t alone (the diagonal of the pattern);
    q's is complete, since query s only ever feeds output s.

    With g the gradient of output s = sum_t p_st v_t, the score s-t takes p_st g.(v_t - o_s),
    so the diagonal's is p_ss g.(v_s - o_s) (k's gradient: that times the scaled q_s; v's:
    p_ss g), and q's, scale * sum_t p_st g.(v_t - o_s) k_t, is g times the [hd, hd] matrix
    `to_q` = scale * sum_t p_st (v_t - o_s) k_t^T: per query one small product, never the
    [seq, seq] pattern per row of gradients.
    """
    grad_v = own_prob * grad
    grad_k = (grad * v_minus_out).sum(-1, keepdim=True) * own_q
    if not with_q:
        return grad_k, grad_v
    return torch.einsum("...bshe,bshed->...bshd", grad, to_q), grad_k, grad_v
