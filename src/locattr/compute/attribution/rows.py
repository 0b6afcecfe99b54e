"""Rows: what a batched backward seeds, one alive target unit per row and prompt (and, where no
gradient crosses positions, per position), and where each row's edges land."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from locattr.compute.attribution.nodes import LayerUnits
from locattr.compute.attribution.sources import SourcePair, SourceParts
from locattr.compute.component_model import ComponentModel, ForwardResult
from locattr.compute.components import LinearComponents
from locattr.graph import OUTPUT_LAYER

# Rough multiple of a row's own gradient and projection tensors held at once during its backward
# (attention-style intermediates, masks, the index tensors of kept edges).
_ROW_BYTES_FACTOR = 4


@dataclass(frozen=True)
class Target:
    """What a backward starts from: `seeded` (the input of the `names` layers, or the logits)
    and the seed of unit c, `direction[c]`, or a one-hot on c when `direction` is None.

    Several layers that read one input tensor are one target: `layer` holds their units side by
    side, those of `names[i]` in components [bounds[i], bounds[i + 1]).
    """

    names: tuple[str, ...]
    layer: LayerUnits
    seeded: Float[Tensor, "batch seq width"]
    direction: Float[Tensor, "C width"] | None
    bounds: tuple[int, ...]


def make_target(
    model: ComponentModel,
    result: ForwardResult,
    names: tuple[str, ...],
    layers: Sequence[LayerUnits],
) -> Target:
    """A target's pre-activation is `x @ V`, so seeding unit c is seeding its input x with
    `V[:, c]`; the `output` pseudo-layer seeds the logits themselves."""
    widths = [layer.alive.shape[-1] for layer in layers]
    bounds = (0, *np.cumsum(widths).tolist())
    if names == (OUTPUT_LAYER,):
        return Target(names, layers[0], result.output, None, bounds)
    directions = []
    for name in names:
        components = model.components(name)
        assert isinstance(components, LinearComponents), f"{name} has no input to attribute to"
        directions.append(components.V.T)
    direction = directions[0] if len(directions) == 1 else torch.cat(directions)
    layer = LayerUnits.side_by_side(layers)
    return Target(names, layer, result.inputs[names[0]], direction, bounds)


def shared_inputs(
    within: Mapping[str, Sequence[SourcePair]], inputs: Mapping[str, Tensor]
) -> list[tuple[str, ...]]:
    """Targets with within-position sources in order, neighbours that read the very same input
    tensor from the same sources together (an attention block's q, k and v; a gated MLP's gate
    and up projections): one batched backward serves them all."""
    groups: list[list[str]] = []
    for name, pairs in within.items():
        if not pairs:
            continue
        if groups:
            last = groups[-1][-1]
            same_input = name in inputs and last in inputs and inputs[name] is inputs[last]
            if same_input and [p.source for p in pairs] == [p.source for p in within[last]]:
                groups[-1].append(name)
                continue
        groups.append([name])
    return [tuple(group) for group in groups]


@dataclass(frozen=True)
class RowUnits:
    """Alive target units (prompt b, position s, component c) and the row each is seeded in."""

    b: Int[Tensor, " n"]
    s: Int[Tensor, " n"]
    c: Int[Tensor, " n"]
    row: Int[Tensor, " n"]

    def select(self, index: Tensor | slice, first_row: int = 0) -> RowUnits:
        """The units at `index`, rows renumbered from `first_row`."""
        return RowUnits(self.b[index], self.s[index], self.c[index], self.row[index] - first_row)

    @staticmethod
    def cat(parts: Sequence[RowUnits]) -> RowUnits:
        if len(parts) == 1:
            return parts[0]
        return RowUnits(
            torch.cat([u.b for u in parts]),
            torch.cat([u.s for u in parts]),
            torch.cat([u.c for u in parts]),
            torch.cat([u.row for u in parts]),
        )


@dataclass(frozen=True)
class RowLayout:
    """Every alive unit's row, and where each target layer's rows begin (a last entry closes
    the last layer's)."""

    units: RowUnits
    starts: tuple[int, ...]

    @property
    def n_rows(self) -> int:
        return self.starts[-1]

    def layer_rows(self, start: int, n_chunk: int) -> list[tuple[int, int]]:
        """Each target layer's [start, stop) rows within the chunk of rows [start, start +
        n_chunk), renumbered from the chunk's first (empty where the layer has none there)."""
        return [
            (max(first, start) - start, min(last, start + n_chunk) - start)
            for first, last in zip(self.starts[:-1], self.starts[1:], strict=True)
        ]


def layout_rows(target: Target, per_position: bool) -> RowLayout:
    """Each layer has rows of its own, so its edges come out in node order. per_position: its
    units at different positions share rows (rank within (b, s)); otherwise each unit of a
    prompt gets its own row (rank within b)."""
    units: list[RowUnits] = []
    starts = [0]
    for lo, hi in zip(target.bounds[:-1], target.bounds[1:], strict=True):
        alive = target.layer.alive[..., lo:hi]
        flat = alive if per_position else alive.flatten(1)
        rank = flat.long().cumsum(-1) - 1
        b, s, c = alive.nonzero(as_tuple=True)
        row = rank.view(alive.shape)[alive]  # nonzero's order
        units.append(RowUnits(b, s, c + lo, row + starts[-1]))
        starts.append(starts[-1] + (int(row.max()) + 1 if row.numel() else 0))
    return RowLayout(RowUnits.cat(units), tuple(starts))


def rows_per_chunk(
    target: Target, sources: Sequence[SourceParts], per_unit: bool, chunk_bytes: int
) -> int:
    """Rows whose seeds, gradients and projected values fit `chunk_bytes` (roughly)."""
    batch, seq, width = target.seeded.shape
    widths = [part.width for part in sources]
    projected = seq * sum(widths) if per_unit else sum(widths)
    per_row = seq * (width + sum(part.directions.shape[-1] for part in sources)) + 3 * projected
    row_bytes = _ROW_BYTES_FACTOR * batch * per_row * target.seeded.element_size()
    return max(1, chunk_bytes // row_bytes)


def seeds(target: Target, n_rows: int, units: RowUnits) -> Float[Tensor, "rows batch seq width"]:
    """The gradient each row starts from: its units' seeds, zero elsewhere."""
    seeded = target.seeded
    out = seeded.new_zeros((n_rows, *seeded.shape))
    if target.direction is None:
        out[units.row, units.b, units.s, units.c] = 1
    else:
        out[units.row, units.b, units.s] = target.direction.index_select(0, units.c)
    return out


@dataclass(frozen=True)
class Slots:
    """Per prompt, (position, for per-position rows) and row: the seeded target unit's node id
    and position, -1 where none. Row order is node order within each target layer."""

    node_id: Int[Tensor, "batch seq_or_1 rows"]
    pos: Int[Tensor, "batch seq_or_1 rows"]

    @property
    def per_unit(self) -> bool:
        return self.node_id.shape[1] == 1

    def rows(self, start: int, stop: int) -> Slots:
        return Slots(self.node_id[..., start:stop], self.pos[..., start:stop])


def target_slots(target: Target, units: RowUnits, n_rows: int, per_unit: bool) -> Slots:
    batch, seq, _ = target.seeded.shape
    node_id = target.layer.node_id[units.b, units.s, units.c]
    shape = (batch, 1, n_rows) if per_unit else (batch, seq, n_rows)
    position = torch.zeros_like(units.b) if per_unit else units.s
    index = (units.b, position, units.row)
    slots = Slots(node_id.new_full(shape, -1), node_id.new_full(shape, -1))
    slots.node_id[index] = node_id
    slots.pos[index] = units.s.to(slots.pos.dtype)
    return slots
