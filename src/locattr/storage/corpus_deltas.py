"""What a write batch adds to the corpus tables, kept as one compressed row until folded in.

Upserting every component pair of every prompt into `corpus_attributions` and inserting every
edge index entry as a row cost generate about 40 % of its time (thousands of rows a prompt, over
a million for a real-shape graph). Instead each write transaction stores one `corpus_deltas`
row: the batch's pair sums and its strong edges, as column arrays (zstd). `fold` adds them to
`corpus_attributions` and `edge_postings` in one pass with numpy; `locattr-generate`,
`locattr merge`, `locattr db optimize` and `locattr db aggregate` fold when they finish.
Readers add the deltas not yet folded, so an answer is exact at any time (slower while a build
is running).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import zstandard
from numpy.typing import NDArray
from sqlalchemy import Connection, delete, func, insert, select

from locattr.storage import edge_postings
from locattr.storage.edge_rows import EdgeRows, PairSums, StrongEntries
from locattr.storage.models import corpus_attributions_table as attributions
from locattr.storage.models import corpus_deltas_table as deltas

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
_ROWS_PER_INSERT = 50_000


def write_delta(connection: Connection, prompts: Sequence[tuple[int, EdgeRows]]) -> None:
    """Store what the prompts add to the corpus tables (one row, in the caller's transaction)."""
    if not prompts:
        return
    sums = PairSums.combine([rows.pairs for _, rows in prompts])
    strong = StrongEntries.of_prompts(prompts)
    if not len(sums) and not len(strong):
        return
    connection.execute(
        insert(deltas),
        [{"pair_sums": _pack_sums(sums), "strong_edges": _pack_strong(strong)}],
    )


@dataclass(frozen=True)
class Pending:
    """The deltas not yet folded: their ids and contents."""

    ids: list[int]
    sums: PairSums
    strong: StrongEntries


def pending(connection: Connection) -> Pending:
    rows = connection.execute(
        select(deltas.c.id, deltas.c.pair_sums, deltas.c.strong_edges).order_by(deltas.c.id)
    ).all()
    return Pending(
        ids=[row[0] for row in rows],
        sums=PairSums.combine([_unpack_sums(bytes(row[1])) for row in rows]),
        strong=StrongEntries.concat([_unpack_strong(bytes(row[2])) for row in rows]),
    )


def has_pending(connection: Connection) -> bool:
    return connection.execute(select(func.count()).select_from(deltas)).scalar_one() > 0


def fold(connection: Connection) -> int:
    """Add every pending delta to `corpus_attributions` and `edge_postings` and drop them (in
    a write transaction); returns the number of deltas folded."""
    found = pending(connection)
    if not found.ids:
        return 0
    _fold_sums(connection, found.sums)
    edge_postings.add_entries(connection, found.strong)
    connection.execute(delete(deltas).where(deltas.c.id <= max(found.ids)))
    return len(found.ids)


def _fold_sums(connection: Connection, sums: PairSums) -> None:
    """Rewrite the table with its sums plus `sums` (one pass, no per-pair upsert)."""
    if not len(sums):
        return
    existing = stored_sums(connection)
    merged = PairSums.combine([existing, sums])
    connection.execute(delete(attributions))
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    statement = (
        "INSERT INTO corpus_attributions (source_id, target_id, total, total_abs, prompt_count) "
        f"VALUES ({', '.join([marker] * 5)})"
    )
    for start in range(0, len(merged), _ROWS_PER_INSERT):
        part = merged.slice(start, start + _ROWS_PER_INSERT)
        columns = (part.source, part.target, part.total, part.total_abs, part.prompt_count)
        # The driver's executemany with plain tuples: a third of the time of dicts through
        # SQLAlchemy, for what can be millions of rows.
        connection.exec_driver_sql(
            statement, list(zip(*(c.tolist() for c in columns), strict=True))
        )


def stored_sums(connection: Connection) -> PairSums:
    """Every row of `corpus_attributions` (folded deltas only)."""
    rows = connection.exec_driver_sql(
        "SELECT source_id, target_id, total, total_abs, prompt_count FROM corpus_attributions"
    ).all()
    # Plain tuples first: numpy reads SQLAlchemy rows an item at a time, ten times slower.
    stored = np.array([tuple(row) for row in rows], dtype=np.int64).reshape(-1, 5)
    return PairSums(*(stored[:, i] for i in range(5)))


def all_sums(connection: Connection) -> PairSums:
    """The corpus attributions of every stored prompt: the table and the pending deltas."""
    return PairSums.combine([stored_sums(connection), pending(connection).sums])


def _pack_sums(sums: PairSums) -> bytes:
    columns = [*_PAIR_COLUMNS, _PAIR_COLUMNS_COUNT]
    return _pack(len(sums), [getattr(sums, name).astype(dtype) for name, dtype in columns])


def _unpack_sums(blob: bytes) -> PairSums:
    arrays = _unpack(blob, [dtype for _, dtype in (*_PAIR_COLUMNS, _PAIR_COLUMNS_COUNT)])
    return PairSums(*(a.astype(np.int64) for a in arrays))


def _pack_strong(strong: StrongEntries) -> bytes:
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
