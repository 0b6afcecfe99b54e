"""The built-in architectures' own backward passes (attention, GELU, SiLU) against autograd's.

Attribution runs them batched (`torch.func.vmap` over rows of seeds), so each is checked batched
and plain, with the seed shapes attribution uses: one position per prompt (position-crossing
rows), every position (within-position rows), and no gradient at all.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from locattr.compute.architectures.attention import causal_attention, diagonal_gradients
from locattr.compute.architectures.common import NewGELU, silu

BATCH, SEQ, HEADS, HD = 2, 7, 3, 4


def _autograd_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Causal attention from plain ops, differentiated by autograd."""
    scores = torch.einsum("bshd,bthd->bhst", q / HD**0.5, k)
    scores = scores.masked_fill(torch.ones(SEQ, SEQ, dtype=torch.bool).triu(1), float("-inf"))
    return torch.einsum("bhst,bthd->bshd", scores.softmax(-1), v)


def _inputs() -> list[Tensor]:
    generator = torch.Generator().manual_seed(0)
    shape = (BATCH, SEQ, HEADS, HD)
    return [torch.randn(shape, generator=generator, requires_grad=True) for _ in range(3)]


def _batched_grads(
    attention: Callable[..., Tensor], inputs: list[Tensor], seeds: Tensor
) -> tuple[Tensor, ...]:
    out = attention(*inputs)

    def vjp(seed: Tensor) -> tuple[Tensor, ...]:
        return torch.autograd.grad(out, inputs, grad_outputs=seed, retain_graph=True)

    return torch.func.vmap(vjp)(seeds)


def _one_position_seeds(rows: int) -> Tensor:
    generator = torch.Generator().manual_seed(1)
    seeds = torch.zeros(rows, BATCH, SEQ, HEADS, HD)
    for row in range(rows - 1):  # the last row seeds nothing
        for prompt in range(BATCH):
            position = int(torch.randint(0, SEQ, (1,), generator=generator))
            seeds[row, prompt, position] = torch.randn(HEADS, HD, generator=generator)
    return seeds


def _assert_same(ours: tuple[Tensor, ...], theirs: tuple[Tensor, ...]) -> None:
    for name, mine, expected in zip("qkv", ours, theirs, strict=True):
        torch.testing.assert_close(mine, expected, rtol=1e-5, atol=1e-6, msg=f"grad of {name}")


@pytest.mark.parametrize("seeding", ["one position per prompt", "every position"])
def test_attention_batched_backward_equals_autograd(seeding: str) -> None:
    inputs = _inputs()
    if seeding == "every position":
        seeds = torch.randn(5, BATCH, SEQ, HEADS, HD, generator=torch.Generator().manual_seed(2))
    else:
        seeds = _one_position_seeds(6)
    ours = _batched_grads(causal_attention, inputs, seeds)
    _assert_same(ours, _batched_grads(_autograd_attention, inputs, seeds))
    if seeding == "one position per prompt":
        assert all(bool((grad[-1] == 0).all()) for grad in ours)
        # v's gradient is non-zero only at and before the seeded position (causal)
        seeded = seeds.flatten(-2).abs().amax(-1) > 0
        reached = ours[2].flatten(-2).abs().amax(-1) > 0
        last = torch.where(seeded, torch.arange(SEQ), -1).amax(-1, keepdim=True)
        assert not bool((reached & (torch.arange(SEQ) > last)).any())


def test_attention_plain_backward_equals_autograd() -> None:
    inputs = _inputs()
    seed = _one_position_seeds(2)[0]
    ours = torch.autograd.grad(causal_attention(*inputs), inputs, grad_outputs=seed)
    theirs = torch.autograd.grad(_autograd_attention(*inputs), inputs, grad_outputs=seed)
    _assert_same(ours, theirs)


def test_attention_under_vmap_of_the_forward() -> None:
    """Per-example gradients (the forward itself vmapped) take the generic batching path."""
    q, k, v = (x.detach() for x in _inputs())

    def per_example(attention: Callable[..., Tensor]) -> Tensor:
        def grad_of_q(q_one: Tensor) -> Tensor:
            return torch.func.grad(lambda x: attention(x[None], k[:1], v[:1]).square().sum())(q_one)

        return torch.func.vmap(grad_of_q)(q)

    torch.testing.assert_close(per_example(causal_attention), per_example(_autograd_attention))


@pytest.mark.parametrize("activation", ["gelu", "silu"])
def test_activation_batched_backward_equals_autograd(activation: str) -> None:
    x = torch.randn(BATCH, SEQ, 16, generator=torch.Generator().manual_seed(3), requires_grad=True)
    ours_fn = NewGELU() if activation == "gelu" else silu

    def theirs_fn(t: Tensor) -> Tensor:
        return F.gelu(t, approximate="tanh") if activation == "gelu" else F.silu(t)

    seeds = torch.randn(4, BATCH, SEQ, 16, generator=torch.Generator().manual_seed(4))
    ours, theirs = (_batched_grads(fn, [x], seeds)[0] for fn in (ours_fn, theirs_fn))
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
    with torch.no_grad():
        torch.testing.assert_close(ours_fn(x), theirs_fn(x), rtol=0, atol=0)


def _own_position(inputs: list[Tensor], seeds: Tensor) -> tuple[Tensor, ...]:
    """Per row, q's gradient, and k's and v's at each position s from the seed at s alone."""
    q_grad = _batched_grads(_autograd_attention, inputs, seeds)[0]
    own_k, own_v = torch.zeros_like(q_grad), torch.zeros_like(q_grad)
    for s in range(SEQ):
        only_s = torch.zeros_like(seeds)
        only_s[:, :, s] = seeds[:, :, s]
        _, k_grad, v_grad = _batched_grads(_autograd_attention, inputs, only_s)
        own_k[:, :, s], own_v[:, :, s] = k_grad[:, :, s], v_grad[:, :, s]
    return q_grad, own_k, own_v


@pytest.mark.parametrize("seeding", ["one position per prompt", "every position"])
def test_diagonal_backward_keeps_each_positions_own_gradient(seeding: str) -> None:
    """Under `diagonal_gradients` k and v take only their own position's query's gradient
    (what the SPD app's same-position edges need), batched and plain; the forward is the
    same."""
    inputs = _inputs()
    if seeding == "every position":
        seeds = torch.randn(5, BATCH, SEQ, HEADS, HD, generator=torch.Generator().manual_seed(5))
    else:
        seeds = _one_position_seeds(6)
    with diagonal_gradients():
        out = causal_attention(*inputs)
        ours = _batched_grads(causal_attention, inputs, seeds)
    torch.testing.assert_close(out, _autograd_attention(*inputs))
    expected = _own_position(inputs, seeds)
    _assert_same(ours, expected)
    assert not torch.allclose(ours[1], _batched_grads(_autograd_attention, inputs, seeds)[1])
    with diagonal_gradients():
        plain = torch.autograd.grad(causal_attention(*inputs), inputs, grad_outputs=seeds[0])
    _assert_same(plain, tuple(g[0] for g in expected))
