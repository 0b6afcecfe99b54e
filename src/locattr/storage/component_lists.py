"""A prompt's firing components packed into bytes (`prompt_postings`): ascending component ids
as first differences, in 2 bytes each where every difference fits and in 4 otherwise.

One tag byte says which: ``2`` then little-endian uint16 differences (the first from 0), or
``4`` then the ids as little-endian int32. A prompt's few hundred components among thousands
sit a few ids apart, so the 2-byte form is the usual one: half of plain int32, and many lists
still unpack in one numpy pass (`unpack_many`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

_DELTAS, _IDS = 2, 4


def pack(component_ids: NDArray[np.int64]) -> bytes:
    """`component_ids` (distinct, >= 0, in any order) as stored: ascending."""
    ids = np.sort(np.asarray(component_ids, dtype=np.int64))
    deltas = np.diff(ids, prepend=0)
    if len(ids) and (deltas.min() < 0 or (len(ids) > 1 and deltas[1:].min() < 1)):
        raise ValueError("component ids must be distinct and non-negative")
    if not len(ids) or deltas.max() <= np.iinfo(np.uint16).max:
        return bytes([_DELTAS]) + deltas.astype("<u2").tobytes()
    return bytes([_IDS]) + ids.astype("<i4").tobytes()


def unpack(blob: bytes) -> NDArray[np.int64]:
    """The component ids `pack` stored in `blob`."""
    return unpack_many([blob])


def unpack_many(blobs: Sequence[bytes]) -> NDArray[np.int64]:
    """The component ids of every blob, concatenated in order."""
    if not blobs:
        return np.zeros(0, np.int64)
    tags = bytes(blob[0] for blob in blobs)
    if tags.count(_DELTAS) == len(blobs):
        return _undelta(blobs)
    return np.concatenate([_unpack_one(blob) for blob in blobs])


def _undelta(blobs: Sequence[bytes]) -> NDArray[np.int64]:
    """All-delta blobs at once: one running sum over their concatenation, less, in each list,
    the sum reached before it."""
    deltas = np.frombuffer(b"".join(blob[1:] for blob in blobs), "<u2").astype(np.int64)
    lengths = np.array([(len(blob) - 1) // 2 for blob in blobs], dtype=np.int64)
    totals = np.cumsum(deltas)
    starts = np.cumsum(lengths) - lengths
    before = np.zeros(len(blobs), np.int64)
    nonempty = starts > 0
    before[nonempty] = totals[starts[nonempty] - 1]
    return totals - np.repeat(before, lengths)


def _unpack_one(blob: bytes) -> NDArray[np.int64]:
    if blob[0] == _DELTAS:
        return np.cumsum(np.frombuffer(blob, "<u2", offset=1).astype(np.int64))
    if blob[0] == _IDS:
        return np.frombuffer(blob, "<i4", offset=1).astype(np.int64)
    raise ValueError(f"not a packed component list (tag {blob[0]})")
