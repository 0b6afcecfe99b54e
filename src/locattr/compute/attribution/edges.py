"""Edge extraction: batched backward passes from a target's rows to its sources' leaves, the
projection onto alive source units, and the values kept, as runs sorted by (prompt, target,
source)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from locattr.compute.attribution.rows import (
    Slots,
    Target,
    layout_rows,
    rows_per_chunk,
    seeds,
    target_slots,
)
from locattr.compute.attribution.sources import PaddedSource, PositionRule, SourceBank, SourcePair
from locattr.compute.attribution.stream import Stream
from locattr.compute.vjp import batched_grad


@dataclass(frozen=True)
class EdgeRun:
    """Edges sorted by (prompt, target, source); ids are per-prompt node indices."""

    prompt: Int[Tensor, " n"]
    source: Int[Tensor, " n"]
    target: Int[Tensor, " n"]
    value: Float[Tensor, " n"]

    @staticmethod
    def cat(runs: Sequence[EdgeRun]) -> EdgeRun:
        if len(runs) == 1:
            return runs[0]
        return EdgeRun(
            torch.cat([r.prompt for r in runs]),
            torch.cat([r.source for r in runs]),
            torch.cat([r.target for r in runs]),
            torch.cat([r.value for r in runs]),
        )


@dataclass(frozen=True)
class Projection:
    """One source group (a layer, or several whose gradients are one tensor) in one chunk of
    rows: its padded units, the gradient of its leaf, and the source positions its edges keep
    (`zero_elsewhere`: the gradient is exactly zero at the others)."""

    source: PaddedSource
    grad: Float[Tensor, "rows batch seq d"]
    positions: PositionRule
    zero_elsewhere: bool


def attribute(
    target: Target,
    pairs: Sequence[SourcePair],
    bank: SourceBank,
    attr_threshold: float,
    chunk_bytes: int,
    per_unit: bool,
    stream: Stream | None = None,
) -> list[list[EdgeRun]]:
    """Edges into each of the target's layers from `pairs`, one sorted run per layer and chunk
    of rows. per_unit: each row seeds one unit per prompt (gradients may cross positions);
    otherwise one unit per prompt and position (they must not). `stream`: the gradients come
    from its chain (the target reads the stream its sources write)."""
    found: list[list[EdgeRun]] = [[] for _ in target.names]
    layout = layout_rows(target, per_position=not per_unit)
    units = layout.units
    if units.row.numel() == 0:
        return found
    names = [p.source for p in pairs]
    rules = {p.source: p for p in pairs}
    leaves = [bank.leaf(name) for name in names]
    n_rows = layout.n_rows
    chunk_rows = rows_per_chunk(target, [bank.parts[name] for name in names], per_unit, chunk_bytes)
    if chunk_rows >= n_rows:
        bounds = [0, units.row.numel()]
    else:
        units = units.select(torch.argsort(units.row, stable=True))
        bounds = torch.searchsorted(
            units.row, torch.arange(0, n_rows + chunk_rows, chunk_rows, device=units.row.device)
        ).tolist()
    for chunk, start in enumerate(range(0, n_rows, chunk_rows)):
        chunk_units = units.select(slice(bounds[chunk], bounds[chunk + 1]), first_row=start)
        n_chunk = min(chunk_rows, n_rows - start)
        seeded = seeds(target, n_chunk, chunk_units)
        if stream is None:
            grads = batched_grad(target.seeded, leaves, seeded)
        else:
            grads = stream.grads(target.seeded, names, seeded)
        projections = [
            Projection(
                bank.padded(joined),
                grad,
                rules[joined[0]].positions,
                all(rules[name].zero_elsewhere for name in joined),
            )
            for joined, grad in _joined(names, grads, bank, rules)
        ]
        slots = target_slots(target, chunk_units, n_chunk, per_unit)
        layer_rows = layout.layer_rows(start, n_chunk)
        for part, run in enumerate(_chunk_edges(projections, slots, attr_threshold, layer_rows)):
            if run is not None:
                found[part].append(run)
    return found


def _joined(
    names: list[str],
    grads: tuple[Tensor, ...],
    bank: SourceBank,
    rules: dict[str, SourcePair],
) -> list[tuple[tuple[str, ...], Tensor]]:
    """Neighbouring sources whose gradients are one tensor, joined: autograd hands every writer
    to a sum (the residual stream) the same gradient, so their units project in one product."""
    joined: list[tuple[tuple[str, ...], Tensor]] = []
    for name, grad in zip(names, grads, strict=True):
        if joined and bank.joinable(name):
            names_before, grad_before = joined[-1]
            before = names_before[-1]
            if (
                bank.joinable(before)
                and rules[name].positions == rules[before].positions
                and _same_tensor(grad, grad_before)
            ):
                joined[-1] = ((*names_before, name), grad_before)
                continue
        joined.append(((name,), grad))
    return joined


def _same_tensor(a: Tensor, b: Tensor) -> bool:
    """The same memory seen the same way, hence the same values."""
    return a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride()


def _chunk_edges(
    projections: list[Projection],
    slots: Slots,
    attr_threshold: float,
    layer_rows: list[tuple[int, int]],
) -> list[EdgeRun | None]:
    """Project each row's gradients onto the alive source units and keep the large values:
    one run per target layer (None where the layer has no rows here).

    `projections` are in node order; `layer_rows` are each target layer's [start, stop) rows.
    Values are laid out [prompt, source position, row, source slot]. Within positions, the
    sources' slots are side by side in node order, so with per-position rows (slot = position
    and row) `nonzero` yields each layer's edges sorted by (target, source); per-unit runs are
    sorted by `merge`. With a positive threshold no masks are needed where gradients are exactly
    zero: padded source slots have weight 0, empty target slots were seeded with zeros, and a
    causal pair's later source positions get no gradient, so all of them fall below it.
    """
    values = [component_grads(p.grad, p.source) for p in projections]
    if slots.per_unit:  # one layer; per source: no concatenated copy, since the runs get sorted
        assert len(layer_rows) == 1, "targets seeded per unit are one layer each"
        runs = [
            _kept(value, p.source.node_id, p.source.valid, slots, p, attr_threshold)
            for p, value in zip(projections, values, strict=True)
        ]
        return [EdgeRun.cat(runs)]
    sources = [p.source for p in projections]
    value = _cat(values)
    source_id, valid = _cat([s.node_id for s in sources]), _cat([s.valid for s in sources])
    return [
        _kept(value[:, :, lo:hi], source_id, valid, slots.rows(lo, hi), None, attr_threshold)
        if hi > lo
        else None
        for lo, hi in layer_rows
    ]


def component_grads(
    grad: Float[Tensor, "rows batch seq d"], source: PaddedSource
) -> Float[Tensor, "batch seq rows K"]:
    """The last product of the batched backward: each row's gradient w.r.t. the alive source
    units' activations (times their weight), from its gradient w.r.t. their output."""
    return torch.einsum("rbsd,bskd->bsrk", grad, source.direction).mul_(source.weight[:, :, None])


def _cat(tensors: list[Tensor]) -> Tensor:
    """Side by side along the last dimension (no copy for one)."""
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors, -1)


def _kept(
    value: Float[Tensor, "batch seq rows K"],
    source_id: Int[Tensor, "batch seq K"],
    source_valid: Bool[Tensor, "batch seq K"],
    slots: Slots,
    projection: Projection | None,
    attr_threshold: float,
) -> EdgeRun:
    """The edges among `value` whose magnitude reaches the threshold; slots per row (per-unit
    rows, whose `projection` says which source positions count) or per position and row.
    Indices come from one flat `nonzero`, and everything is gathered by it from views
    broadcast to `value`'s shape (cheaper than four index tensors)."""
    batch, seq, _, _ = value.shape
    keep = value.abs() >= attr_threshold
    if attr_threshold <= 0:
        target_ok = slots.node_id >= 0  # [batch, 1 or seq, rows]
        keep &= target_ok[..., None] & source_valid[:, :, None, :]
    if projection is not None and (attr_threshold <= 0 or not projection.zero_elsewhere):
        positions = torch.arange(seq, device=value.device)[None, :, None]
        match projection.positions:
            case "causal":
                keep &= (positions <= slots.pos)[..., None]
            case "same":
                keep &= (positions == slots.pos)[..., None]
            case "any":
                pass
    flat = keep.flatten().nonzero().squeeze(1)
    shape = value.shape
    if batch == 1:
        prompt = torch.zeros_like(flat)
    else:
        prompt = (
            torch.arange(batch, device=flat.device)[:, None, None, None].expand(shape).take(flat)
        )
    source = source_id[:, :, None, :].expand(shape).take(flat)
    target = slots.node_id[..., None].expand(shape).take(flat)
    return EdgeRun(prompt, source, target, value.take(flat))


def merge(runs: Sequence[EdgeRun], n_nodes: int) -> EdgeRun:
    """One run sorted by (prompt, target, source)."""
    run = EdgeRun.cat(runs)
    stride = n_nodes + 1
    key = (run.prompt * stride + run.target) * stride + run.source
    if bool((key[1:] < key[:-1]).any()):
        order = torch.sort(key).indices
        prompt, source, target, value = (
            t.index_select(0, order) for t in (run.prompt, run.source, run.target, run.value)
        )
        run = EdgeRun(prompt, source, target, value)
    return run
