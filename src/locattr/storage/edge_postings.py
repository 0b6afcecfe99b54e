"""The edge index packed per component pair: 12 bytes an entry, a fifth of the graph bytes.

Per pair (`edge_postings`): the prompt ids (little-endian int32, ascending), the signed values
(float32) and the positions (uint16 source, target pairs) of the prompts where its strongest
edge reaches the floor. Entries arrive in write batches (`corpus_deltas`) and are added here
when those are folded (`postings_build.fold`); a reader adds the pending ones itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Connection

from locattr.storage import index_queries
from locattr.storage.edge_rows import StrongEntries

_SOURCES_PER_STATEMENT = 500


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
    def of(strong: StrongEntries) -> PairEntries:
        return PairEntries(
            strong.prompt_id, strong.value, strong.source_position, strong.target_position
        )


def read_pair(
    connection: Connection, source_id: int, target_id: int, pending: StrongEntries
) -> PairEntries:
    """Every edge index entry of the pair: its posting and its `pending` entries."""
    parts = [
        PairEntries.unpacked(*row)
        for row in connection.execute(index_queries.edge_posting(source_id, target_id))
    ]
    mine = (pending.source == source_id) & (pending.target == target_id)
    parts.append(PairEntries.of(pending.take(mine)))
    return PairEntries.concat(parts)


def postings_of(
    connection: Connection, keys: list[tuple[int, int]]
) -> dict[tuple[int, int], PairEntries]:
    """The stored postings of these pairs (read by source component, a block at a time)."""
    wanted = set(keys)
    sources = sorted({source for source, _ in keys})
    found: dict[tuple[int, int], PairEntries] = {}
    for first in range(0, len(sources), _SOURCES_PER_STATEMENT):
        block = sources[first : first + _SOURCES_PER_STATEMENT]
        for source, target, *blobs in connection.exec_driver_sql(
            index_queries.edge_postings_from(block)
        ):
            if (source, target) in wanted:
                found[(source, target)] = PairEntries.unpacked(*(bytes(b) for b in blobs))
    return found


def all_entries(
    connection: Connection, pending: StrongEntries
) -> Iterator[tuple[int, int, PairEntries]]:
    """Every pair's entries, packed and pending (for checks and benchmarks)."""
    packed = {(int(s), int(t)) for s, t in connection.execute(index_queries.edge_posting_pairs())}
    pairs = packed | set(zip(pending.source.tolist(), pending.target.tolist(), strict=True))
    for source, target in sorted(pairs):
        yield source, target, read_pair(connection, source, target, pending)
