"""What a write batch adds to the corpus tables, kept as one compressed row until folded in.

Upserting every component pair of every prompt into `corpus_attributions` and inserting every
edge index entry as a row cost generate about 40 % of its time (thousands of rows a prompt, over
a million for a real-shape graph). Instead each write transaction stores one `corpus_deltas`
row: the batch's pair sums and its strong edges, as column arrays (zstd). `postings_build.fold`
adds them to `corpus_attributions` and `edge_postings` in one pass with numpy;
`locattr-generate`, `locattr merge`, `locattr db optimize` and `locattr db aggregate` fold when
they finish. Readers add the deltas not yet folded, so an answer is exact at any time (slower
while a build is running).

This module reads the deltas and the folded sums, and packs a delta's blobs;
`postings_build.write_delta` and `postings_build.fold` write them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import zstandard
from numpy.typing import NDArray
from sqlalchemy import Connection

from locattr.storage import index_queries
from locattr.storage.edge_rows import PairSums, StrongEntries

_PAIR_COLUMNS = (("source", "<i4"), ("target", "<i4"), ("total", "<i8"), ("total_abs", "<i8"))
_PAIR_COLUMNS_COUNT = ("prompt_count", "<i4")
_EDGE_COLUMNS = (
    ("source", "<i4"),
    ("target", "<i4"),
    ("prompt_id", "<i4"),
    ("value", "<f4"),
    ("source_position", "<u2"),
    ("target_position", "<u2"),
)
_LENGTH = struct.Struct("<q")


@dataclass(frozen=True)
class Pending:
    """The deltas not yet folded: their ids and contents."""

    ids: list[int]
    sums: PairSums
    strong: StrongEntries


def pending(connection: Connection) -> Pending:
    """The deltas not yet folded, in the order written."""
    rows = connection.execute(index_queries.pending_deltas()).all()
    return Pending(
        ids=[row[0] for row in rows],
        sums=PairSums.combine([_unpack_sums(bytes(row[1])) for row in rows]),
        strong=StrongEntries.concat([_unpack_strong(bytes(row[2])) for row in rows]),
    )


def has_pending(connection: Connection) -> bool:
    """Whether some delta waits to be folded."""
    return connection.execute(index_queries.delta_count()).scalar_one() > 0


def stored_sums(connection: Connection) -> PairSums:
    """Every row of `corpus_attributions` (folded deltas only)."""
    rows = connection.exec_driver_sql(index_queries.all_corpus_attributions()).all()
    # Plain tuples first: numpy reads SQLAlchemy rows an item at a time, ten times slower.
    stored = np.array([tuple(row) for row in rows], dtype=np.int64).reshape(-1, 5)
    return PairSums(*(stored[:, i] for i in range(5)))


def all_sums(connection: Connection) -> PairSums:
    """The corpus attributions of every stored prompt: the table and the pending deltas."""
    return PairSums.combine([stored_sums(connection), pending(connection).sums])


def pack_sums(sums: PairSums) -> bytes:
    """A delta's pair sums as its blob (zstd column arrays, read back by `pending`)."""
    columns = [*_PAIR_COLUMNS, _PAIR_COLUMNS_COUNT]
    return _pack(len(sums), [getattr(sums, name).astype(dtype) for name, dtype in columns])


def _unpack_sums(blob: bytes) -> PairSums:
    arrays = _unpack(blob, [dtype for _, dtype in (*_PAIR_COLUMNS, _PAIR_COLUMNS_COUNT)])
    return PairSums(*(a.astype(np.int64) for a in arrays))


def pack_strong(strong: StrongEntries) -> bytes:
    """A delta's edge index entries as its blob (zstd column arrays, read back by `pending`)."""
    return _pack(
        len(strong), [getattr(strong, name).astype(dtype) for name, dtype in _EDGE_COLUMNS]
    )


def _unpack_strong(blob: bytes) -> StrongEntries:
    a = _unpack(blob, [dtype for _, dtype in _EDGE_COLUMNS])
    source, target, prompt_id, _, source_position, target_position = (
        column.astype(np.int64) for column in a
    )
    return StrongEntries(
        source, target, prompt_id, a[3].astype(np.float32), source_position, target_position
    )


def _pack(n: int, arrays: list[NDArray[np.generic]]) -> bytes:
    raw = _LENGTH.pack(n) + b"".join(a.tobytes() for a in arrays)
    return zstandard.ZstdCompressor(level=1).compress(raw)


def _unpack(blob: bytes, dtypes: list[str]) -> list[NDArray[np.generic]]:
    raw = zstandard.ZstdDecompressor().decompress(blob)
    (n,) = _LENGTH.unpack_from(raw)
    arrays, offset = [], _LENGTH.size
    for dtype in dtypes:
        width = np.dtype(dtype).itemsize * n
        arrays.append(np.frombuffer(raw, dtype, count=n, offset=offset))
        offset += width
    return arrays
