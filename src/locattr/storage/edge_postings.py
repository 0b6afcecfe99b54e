"""The edge index packed per component pair, at a third of the bytes of its rows.

Prompts write their edge index rows to `edge_activations` (one row per prompt and pair, about
28 bytes in SQLite). `pack` moves them into `edge_postings`: per pair, the prompt ids
(little-endian int32, ascending), the signed values (float32) and the positions (uint16
source, target pairs): 12 bytes an entry. `locattr-generate`, `locattr merge` and
`locattr db optimize` pack when they finish; a pair's entries are its posting plus its rows not
yet packed, so a reader never misses one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Connection, delete, insert, select

from locattr.storage.models import edge_activations_table as rows_table
from locattr.storage.models import edge_postings_table as postings_table

_SOURCES_PER_BLOCK = 64
"""Source components packed at a time (their rows are read into memory together)."""


@dataclass(frozen=True)
class PairEntries:
    """One component pair's edge index entries, by ascending prompt id."""

    prompt_ids: NDArray[np.int64]
    values: NDArray[np.float32]
    source_positions: NDArray[np.int64]
    target_positions: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def take(self, which: NDArray[np.intp] | NDArray[np.bool_]) -> PairEntries:
        return PairEntries(
            self.prompt_ids[which],
            self.values[which],
            self.source_positions[which],
            self.target_positions[which],
        )

    @staticmethod
    def concat(parts: list[PairEntries]) -> PairEntries:
        joined = PairEntries(
            np.concatenate([p.prompt_ids for p in parts]),
            np.concatenate([p.values for p in parts]),
            np.concatenate([p.source_positions for p in parts]),
            np.concatenate([p.target_positions for p in parts]),
        )
        return joined.take(np.argsort(joined.prompt_ids, kind="stable"))

    def packed(self) -> dict[str, bytes]:
        positions = np.stack([self.source_positions, self.target_positions], axis=1)
        return {
            "prompt_ids": self.prompt_ids.astype("<i4").tobytes(),
            "edge_values": self.values.astype("<f4").tobytes(),
            "positions": positions.astype("<u2").tobytes(),
        }

    @staticmethod
    def unpacked(prompt_ids: bytes, values: bytes, positions: bytes) -> PairEntries:
        pairs = np.frombuffer(positions, "<u2").reshape(-1, 2).astype(np.int64)
        return PairEntries(
            np.frombuffer(prompt_ids, "<i4").astype(np.int64),
            np.frombuffer(values, "<f4").astype(np.float32),
            pairs[:, 0],
            pairs[:, 1],
        )

    @staticmethod
    def from_rows(rows: NDArray[np.float64]) -> PairEntries:
        """From (prompt_id, value, source_position, target_position) rows."""
        return PairEntries(
            rows[:, 0].astype(np.int64),
            rows[:, 1].astype(np.float32),
            rows[:, 2].astype(np.int64),
            rows[:, 3].astype(np.int64),
        )


def read_pair(connection: Connection, source_id: int, target_id: int) -> PairEntries:
    """Every edge index entry of the pair: its posting and its rows not yet packed."""
    parts = [
        PairEntries.unpacked(*row)
        for row in connection.execute(
            select(
                postings_table.c.prompt_ids,
                postings_table.c.edge_values,
                postings_table.c.positions,
            ).where(
                postings_table.c.source_id == source_id, postings_table.c.target_id == target_id
            )
        )
    ]
    tail = _fetch(
        connection,
        f"SELECT prompt_id, value, source_position, target_position FROM edge_activations "
        f"WHERE source_id = {int(source_id)} AND target_id = {int(target_id)}",
        columns=4,
    )
    parts.append(PairEntries.from_rows(tail))
    return PairEntries.concat(parts)


def pack(connection: Connection) -> int:
    """Move every unpacked row into its pair's posting (inside a write transaction); returns
    the number of rows moved."""
    moved = 0
    last_source = connection.execute(
        select(rows_table.c.source_id).order_by(rows_table.c.source_id.desc()).limit(1)
    ).scalar()
    if last_source is None:
        return 0
    for first in range(0, int(last_source) + 1, _SOURCES_PER_BLOCK):
        block = f"source_id >= {first} AND source_id < {first + _SOURCES_PER_BLOCK}"
        rows = _fetch(
            connection,
            "SELECT source_id, target_id, prompt_id, value, source_position, target_position "
            f"FROM edge_activations WHERE {block} ORDER BY source_id, target_id, prompt_id",
            columns=6,
        )
        if not len(rows):
            continue
        existing = {
            (source, target): PairEntries.unpacked(*blobs)
            for source, target, *blobs in connection.execute(
                select(
                    postings_table.c.source_id,
                    postings_table.c.target_id,
                    postings_table.c.prompt_ids,
                    postings_table.c.edge_values,
                    postings_table.c.positions,
                ).where(
                    postings_table.c.source_id >= first,
                    postings_table.c.source_id < first + _SOURCES_PER_BLOCK,
                )
            )
        }
        entries = []
        for (source, target), new in _split_by_pair(rows):
            old = existing.get((source, target))
            merged = new if old is None else PairEntries.concat([old, new])
            entries.append({"source_id": source, "target_id": target, **merged.packed()})
        touched = [e for e in entries if (e["source_id"], e["target_id"]) in existing]
        for entry in touched:
            connection.execute(
                delete(postings_table).where(
                    postings_table.c.source_id == entry["source_id"],
                    postings_table.c.target_id == entry["target_id"],
                )
            )
        connection.execute(insert(postings_table), entries)
        connection.execute(
            delete(rows_table).where(
                rows_table.c.source_id >= first,
                rows_table.c.source_id < first + _SOURCES_PER_BLOCK,
            )
        )
        moved += len(rows)
    return moved


def all_entries(connection: Connection) -> Iterator[tuple[int, int, PairEntries]]:
    """Every pair's entries, packed and not (for checks and benchmarks)."""
    pairs = connection.execute(
        select(postings_table.c.source_id, postings_table.c.target_id).union(
            select(rows_table.c.source_id, rows_table.c.target_id)
        )
    ).all()
    for source, target in pairs:
        yield int(source), int(target), read_pair(connection, source, target)


def _split_by_pair(rows: NDArray[np.float64]) -> Iterator[tuple[tuple[int, int], PairEntries]]:
    """Rows (source, target, prompt, value, positions) in key order, grouped by pair."""
    new = np.ones(len(rows), dtype=bool)
    new[1:] = (rows[1:, 0] != rows[:-1, 0]) | (rows[1:, 1] != rows[:-1, 1])
    starts = np.flatnonzero(new).tolist()
    for begin, end in zip(starts, [*starts[1:], len(rows)], strict=True):
        yield (
            (int(rows[begin, 0]), int(rows[begin, 1])),
            PairEntries.from_rows(rows[begin:end, 2:]),
        )


def _fetch(connection: Connection, sql: str, *, columns: int) -> NDArray[np.float64]:
    """Numeric rows as one float64 array (ids below 2**53 and float32 values are exact)."""
    found = connection.exec_driver_sql(sql).all()
    return np.array(found, dtype=np.float64).reshape(-1, columns)
