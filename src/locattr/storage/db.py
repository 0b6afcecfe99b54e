"""`LocalAttrDB`: the Python API over one attribution database (SQLite file or PostgreSQL)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import Engine

from locattr.graph import PSEUDO_LAYERS, Graph
from locattr.storage import aggregate, corpus, postings_build, queries, reads, writes
from locattr.storage.codec import ValueEncoding, decode_graph
from locattr.storage.engine import (
    DatabaseError,
    DatabaseTarget,
    create_sync_engine,
    resolve_target,
)
from locattr.storage.keys import ComponentKey
from locattr.storage.merge import merge_databases
from locattr.storage.provenance import recorded_value_encoding
from locattr.storage.queries import Rank
from locattr.storage.reads import DEFAULT_MIN_COUNT, CofiringOrder
from locattr.storage.records import (
    Cofiring,
    ComponentStats,
    ComponentSummary,
    EdgeSearchPage,
    LayerSlot,
    Partners,
    PromptInfo,
    PromptRecord,
    SearchPage,
)
from locattr.storage.schema import check_revision


class LocalAttrDB:
    """An attribution database. Reads are plain method calls; writes are batched transactions.

    ``LocalAttrDB(path_or_url)`` opens (creating an empty SQLite file or PostgreSQL schema when
    needed); ``readonly=True`` refuses to create and never writes (what the server uses).
    """

    def __init__(self, path_or_url: str | Path, *, readonly: bool = False) -> None:
        self.target: DatabaseTarget = resolve_target(path_or_url)
        self.readonly = readonly
        path = self.target.sqlite_path
        if path is not None and not path.exists():
            if readonly:
                raise DatabaseError(f"no database at {path}: build one with locattr-generate")
            if not path.parent.is_dir():
                raise DatabaseError(f"cannot create {path}: directory {path.parent} does not exist")
        self.engine: Engine = create_sync_engine(self.target, readonly=readonly)
        try:
            check_revision(self.engine, self.target, create=not readonly)
        except BaseException:
            self.engine.dispose()
            raise
        self._layers = reads.LayerCache()

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Release connections (and, for SQLite writers, fold the WAL into the main file)."""
        if self.target.is_sqlite and not self.readonly:
            self.checkpoint()
        self.engine.dispose()

    def __enter__(self) -> LocalAttrDB:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    def checkpoint(self) -> None:
        """Truncate the SQLite WAL (call between batches; a no-op on PostgreSQL)."""
        if not self.target.is_sqlite:
            return
        # Outside any transaction: a checkpoint inside BEGIN fails with "table is locked".
        raw = self.engine.raw_connection()
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
        finally:
            raw.close()

    # -- writing -------------------------------------------------------------------------

    def register_layers(self, layers: Mapping[str, int]) -> None:
        """Declare decomposed layers (name -> number of components), in model order."""
        self._require_writable()
        with writes.write_transaction(self.engine) as connection:
            writes.register_layers(connection, layers)
        self._layers = reads.LayerCache()

    def add_prompt(
        self, record: PromptRecord, *, value_encoding: ValueEncoding | None = None
    ) -> int | None:
        """Store one prompt with its graph and index rows; None if its identity is stored."""
        return self.add_prompts([record], value_encoding=value_encoding)[0]

    def add_prompts(
        self, records: Sequence[PromptRecord], *, value_encoding: ValueEncoding | None = None
    ) -> list[int | None]:
        """Store prompts in one transaction: all of them or, on error, none.

        Edge values are stored as `value_encoding` says; by default as the database's build
        recorded (meta `value_precision`, which `locattr-generate` writes), float32 (lossless)
        where it records nothing. Graph encoding happens before the transaction so the write
        lock is held briefly. Returns each record's new id, or None where the identity was
        already stored.
        """
        self._require_writable()
        if value_encoding is None:
            value_encoding = recorded_value_encoding(self.get_meta())
        slots = self._write_slots(records)
        floor = self.edge_index_min_abs()
        prepared = [writes.prepare_prompt(r, slots, value_encoding, floor) for r in records]
        with writes.write_transaction(self.engine) as connection:
            writes.set_meta(connection, {writes.EDGE_INDEX_MIN_ABS_KEY: floor})
            return writes.insert_prompts(connection, prepared)

    def edge_index_min_abs(self) -> float:
        """The edge index's floor (|value| of a pair's strongest edge in a prompt)."""
        with self.engine.connect() as connection:
            return corpus.edge_index_min_abs(connection)

    def aggregate(
        self,
        *,
        edge_min_abs: float | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> aggregate.AggregateReport:
        """Rebuild the corpus attributions and the edge index from the stored graphs, with the
        edge index's floor `edge_min_abs` (the recorded one when None); one transaction."""
        self._require_writable()
        floor = self.edge_index_min_abs() if edge_min_abs is None else edge_min_abs
        if not math.isfinite(floor) or floor < 0:
            raise queries.QueryError(f"the edge index floor must be finite and >= 0, got {floor}")
        with writes.write_transaction(self.engine) as connection:
            report = aggregate.rebuild(connection, edge_min_abs=floor, progress=progress)
        self.checkpoint()
        return report

    def build_postings(self) -> int:
        """Pack the index per component for fast search (after a build or a merge).

        Returns the highest prompt id covered; prompts added later are still found (from the
        index rows), just more slowly until the next build.
        """
        self._require_writable()
        with writes.write_transaction(self.engine) as connection:
            return postings_build.build_postings(connection)

    def set_meta(self, values: Mapping[str, object]) -> None:
        self._require_writable()
        with writes.write_transaction(self.engine) as connection:
            writes.set_meta(connection, values)

    def set_vocabulary(self, tokens: Sequence[str]) -> None:
        """Store the tokenizer's vocabulary (token id -> text), which labels output nodes."""
        self.set_meta({queries.VOCABULARY_KEY: list(tokens)})

    def get_vocabulary(self) -> list[str] | None:
        with self.engine.connect() as connection:
            return reads.vocabulary(connection)

    def set_activation_contexts(self, contexts: Mapping[str, Mapping[str, Any]]) -> None:
        """Store per-component activation contexts keyed by component key.

        A context's ``mean_ci`` field, when present, becomes the component's dataset mean CI.
        """
        self._require_writable()
        ids = {
            self._component_id(ComponentKey.parse(key)): value for key, value in contexts.items()
        }
        mean_ci = {i: float(v["mean_ci"]) for i, v in ids.items() if "mean_ci" in v}
        with writes.write_transaction(self.engine) as connection:
            writes.set_activation_contexts(connection, ids, mean_ci)

    def merge_from(self, other: LocalAttrDB, *, batch_size: int = 64) -> int:
        """Copy `other`'s prompts (new identities only), contexts and meta; returns prompts added.

        Ids are remapped through layer names and prompt identities, so the two databases may
        number their prompts and components differently.
        """
        self._require_writable()
        added = merge_databases(self, other, batch_size=batch_size)
        self._layers = reads.LayerCache()
        return added

    # -- reading -------------------------------------------------------------------------

    def get_prompt_count(self) -> int:
        with self.engine.connect() as connection:
            return reads.prompt_count(connection)

    def get_prompt(self, prompt_id: int) -> PromptInfo | None:
        found = self.get_prompts([prompt_id])
        return found[0] if found else None

    def get_prompts(self, prompt_ids: Sequence[int]) -> list[PromptInfo]:
        """Several prompts in one statement, in the order asked (unknown ids are left out)."""
        with self.engine.connect() as connection:
            return [self._with_graph(info) for info in reads.get_prompts(connection, prompt_ids)]

    def _with_graph(self, info: PromptInfo) -> PromptInfo:
        """`info` able to read its graph from this database (for `PromptInfo.pairs_json`)."""
        return replace(info, load_graph=partial(self.get_graph, info.id))

    def existing_identities(self, identities: Sequence[str]) -> set[str]:
        """Which of these prompt identities are stored (what a resumed build skips)."""
        found: set[str] = set()
        with self.engine.connect() as connection:
            for start in range(0, len(identities), 5000):
                chunk = identities[start : start + 5000]
                found.update(connection.execute(queries.stored_identities(chunk)).scalars())
        return found

    def get_graph(self, prompt_id: int) -> Graph | None:
        """The prompt's graph; None if there is no such prompt or it was stored index-only."""
        with self.engine.connect() as connection:
            blob = reads.get_graph_blob(connection, prompt_id)
        return decode_graph(blob) if blob is not None else None

    def iter_prompts(self, *, page_size: int = 500) -> Iterator[PromptInfo]:
        """Every prompt in id order, read a page at a time."""
        cursor = None
        while True:
            with self.engine.connect() as connection:
                page = reads.list_prompts(connection, limit=page_size, cursor=cursor)
            yield from map(self._with_graph, page.items)
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def get_meta(self) -> dict[str, Any]:
        with self.engine.connect() as connection:
            return reads.get_meta(connection)

    def get_layers(self) -> dict[str, int]:
        """Decomposed layers in model order: name -> number of components."""
        return reads.layer_sizes(self.layer_slots())

    def layer_slots(self) -> dict[str, LayerSlot]:
        """Layer name -> where its component ids live (read fresh)."""
        with self.engine.connect() as connection:
            return dict(self._layers.slots(connection, refresh=True))

    def get_activation_contexts(self) -> dict[str, dict[str, Any]]:
        """Every stored activation context, keyed by component key."""
        with self.engine.connect() as connection:
            return reads.activation_contexts(connection)

    def get_activation_context(self, key: str) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            return reads.activation_context(connection, self._layers, key)

    def get_unique_components(self) -> list[str]:
        """Keys of every component that fires in at least one stored prompt, in model order."""
        with self.engine.connect() as connection:
            ids = connection.execute(queries.active_component_ids()).scalars().all()
            return [self._layers.key_of(connection, i) for i in sorted(ids)]

    def list_components(
        self, *, layer: str | None = None, limit: int = 100
    ) -> list[ComponentSummary]:
        """Components that fire in stored prompts, most prompts first."""
        with self.engine.connect() as connection:
            return reads.list_components(connection, self._layers, layer=layer, limit=limit).items

    def get_component_stats(self, key: str, *, top_k: int = 10) -> ComponentStats | None:
        """How often and how strongly `key` fires; None if no such component exists."""
        with self.engine.connect() as connection:
            return reads.component_stats(connection, self._layers, key, top_k=top_k)

    def find_prompts_with_components(
        self,
        keys: Iterable[str],
        require_all: bool = True,
        *,
        limit: int = 50,
        cursor: str | None = None,
        min_ci: float = 0.0,
        same_position: bool = False,
        exclude: Iterable[str] = (),
        rank: Rank = "specificity",
    ) -> SearchPage:
        """Prompts where all (``require_all``) or any of the components fire and none of the
        `exclude` components does, best first.

        Ranking (``rank``, see `locattr.storage.queries.Rank`): ``specificity`` scores a prompt
        by the sum over the queried components present in it of their CI sum there times
        ``ln(1 + N / n)`` (N prompts in the database, n the prompts where the component fires);
        ``max_ci`` by the sum of their max CI there. Descending; ties by prompt id. Keys are
        de-duplicated; a malformed key raises `ComponentKeyError`, a key both queried and
        excluded `QueryError`; an unknown key matches (or excludes) nothing and is reported in
        ``unknown_keys``. ``min_ci`` counts a component, queried or excluded, only in prompts
        where its max CI reaches it; ``same_position`` keeps prompts where all components fire
        at one position.
        """
        with self.engine.connect() as connection:
            return reads.search(
                connection,
                self._layers,
                keys,
                require_all=require_all,
                limit=limit,
                cursor=cursor,
                min_ci=min_ci,
                same_position=same_position,
                exclude=exclude,
                rank=rank,
            )

    def get_cofiring(
        self,
        key: str,
        *,
        limit: int = 20,
        min_count: int = DEFAULT_MIN_COUNT,
        order: CofiringOrder = "lift",
    ) -> Cofiring | None:
        """The components firing in the same prompts as `key`, over every stored prompt, with
        their count, lift and Jaccard index (see `CofiringPartner`), best first by `order`;
        None if there is no such component."""
        with self.engine.connect() as connection:
            return reads.cofiring(
                connection, self._layers, key, limit=limit, min_count=min_count, order=order
            )

    def get_partners(
        self, key: str, *, direction: corpus.Direction = "upstream", limit: int = 20
    ) -> Partners:
        """`key`'s strongest sources (``upstream``) or targets (``downstream``) summed over
        every stored graph, largest total |value| first (see `Partner`).

        Raises `UnknownComponentError` for a key naming no component, and
        `StaleCorpusTablesError` where `aggregate` is needed first."""
        with self.engine.connect() as connection:
            return corpus.partners(connection, self._layers, key, direction=direction, limit=limit)

    def find_prompts_with_edge(
        self,
        source: str,
        target: str,
        *,
        min_abs: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> EdgeSearchPage:
        """Prompts where an edge from `source` to `target` (any positions) has |value| >=
        `min_abs` (default and lowest: the edge index's floor), largest |value| first."""
        with self.engine.connect() as connection:
            return corpus.edge_search(
                connection,
                self._layers,
                source,
                target,
                min_abs=min_abs,
                limit=limit,
                cursor=cursor,
            )

    # -- internals -----------------------------------------------------------------------

    def _require_writable(self) -> None:
        if self.readonly:
            raise DatabaseError(f"{self.target.display} is open read-only")

    def _write_slots(self, records: Sequence[PromptRecord]) -> dict[str, LayerSlot]:
        """Layer slots covering the records' layers (re-read if another writer added some)."""
        needed = {name for r in records for name in r.graph.layers} - PSEUDO_LAYERS
        with self.engine.connect() as connection:
            slots = self._layers.slots(connection)
            if not needed <= slots.keys():
                slots = self._layers.slots(connection, refresh=True)
        return slots

    def _component_id(self, key: ComponentKey) -> int:
        with self.engine.connect() as connection:
            component_id = self._layers.component_id(connection, key)
        if component_id is None:
            raise DatabaseError(f"no component {key} in {self.target.display}")
        return component_id
