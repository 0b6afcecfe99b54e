"""Sigmoid forward values (format §5.3) and the lower-leaky-hard custom backward."""

from __future__ import annotations

import torch

from locattr.compute.sigmoids import ci_functions, lower_leaky_hard

X = torch.tensor([-2.0, -0.5, 0.0, 0.25, 0.5, 1.0, 1.5, 3.0], dtype=torch.float64)


def test_forward_values() -> None:
    lower, upper = ci_functions("leaky_hard")
    assert torch.equal(lower(X), X.clamp(0, 1))
    assert torch.allclose(upper(X), torch.where(X > 1, 1 + 0.01 * (X - 1), X.clamp(0, 1)))
    assert torch.equal(ci_functions("hard")[0](X), X.clamp(0, 1))
    assert torch.equal(ci_functions("normal")[0](X), torch.sigmoid(X))
    swish = ci_functions("swish_hard")[0](X)
    assert (
        abs(float(swish[4]) - 0.5) < 1e-12 and float(swish[0]) < 1e-3 and float(swish[-1]) > 0.999
    )


def test_lower_leaky_hard_backward() -> None:
    x = X.clone().requires_grad_(True)
    for g, expected in (
        (torch.ones_like(X), [0, 0, 0, 1, 1, 1, 0, 0]),
        (-torch.ones_like(X), [-0.01, -0.01, -0.01, -1, -1, -1, 0, 0]),
    ):
        (grad,) = torch.autograd.grad(lower_leaky_hard(x), x, g)
        assert torch.allclose(grad, torch.tensor(expected, dtype=torch.float64))
