"""Position blocks: targets seeded one unit per row go a block of target positions at a time,
each over the shortest prefix forward that holds it.

A seed at position s reaches only positions <= s when the pairs are causal, and attention's
backward costs grow with the length (autograd's with its square). Each block's prefix forward
reuses the full forward's leaves; it is checked against the full forward, so a model that is
not causal elsewhere gets one block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from locattr.compute.component_model import ForwardResult

POSITION_BLOCKS = 4
# A block of per-unit targets costs a prefix forward and a backward per target layer whatever
# its length; on CPU 2 blocks beat 4 at 32 positions (by 8 %) and lost at 64 (by 5 %).
MIN_BLOCK_POSITIONS = 16


@dataclass(frozen=True)
class PositionBlock:
    """Target positions [start, stop)."""

    start: int
    stop: int


def position_blocks(seq: int, causal: bool) -> list[PositionBlock]:
    """One block unless every pair keeps only source positions <= the target's; then up to
    `POSITION_BLOCKS` of `MIN_BLOCK_POSITIONS` or more."""
    if seq == 0:
        return []
    n = min(POSITION_BLOCKS, max(1, seq // MIN_BLOCK_POSITIONS)) if causal else 1
    bounds = [round(seq * i / n) for i in range(n + 1)]
    return [PositionBlock(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def same_prefix(prefix: ForwardResult, full: ForwardResult, names: Sequence[str]) -> bool:
    """Whether a prefix forward reproduces the full forward's inputs and outputs of `names`
    on its positions (it does for causal models, up to float rounding)."""
    stop = prefix.output.shape[1]
    pairs = [(prefix.inputs, full.inputs), (prefix.outputs, full.outputs)]
    return all(
        torch.allclose(short[name], long[name][:, :stop], rtol=1e-3, atol=1e-5)
        for short, long in pairs
        for name in names
        if name in short
    )
