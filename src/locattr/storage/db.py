"""`LocalAttrDB`: the Python API over one attribution database (SQLite file or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
from sqlalchemy import Connection, Engine

from locattr.graph import Graph
from locattr.storage import queries, writes
from locattr.storage.codec import ValueDtype, decode_graph
from locattr.storage.engine import (
    DatabaseError,
    DatabaseTarget,
    create_sync_engine,
    resolve_target,
)
from locattr.storage.index_rows import decode_positions
from locattr.storage.keys import ComponentKey, parse_keys
from locattr.storage.records import (
    ComponentMatch,
    ComponentStats,
    ComponentSummary,
    PromptInfo,
    PromptRecord,
    SearchHit,
    SearchPage,
)
from locattr.storage.schema import check_revision

PROVENANCE_KEYS = ("run", "config_digest", "ci_threshold", "attr_threshold", "n_blocks")
"""Meta keys that must agree before prompts from two builds may share one database."""


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
        self._slots: dict[str, writes.LayerSlot] = {}

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
            self._slots = writes.register_layers(connection, layers)

    def add_prompt(
        self, record: PromptRecord, *, value_dtype: ValueDtype = ValueDtype.FLOAT32
    ) -> int | None:
        """Store one prompt with its graph and index rows; None if its identity is stored."""
        return self.add_prompts([record], value_dtype=value_dtype)[0]

    def add_prompts(
        self, records: Sequence[PromptRecord], *, value_dtype: ValueDtype = ValueDtype.FLOAT32
    ) -> list[int | None]:
        """Store prompts in one transaction: all of them or, on error, none.

        Graph encoding happens before the transaction so the write lock is held briefly.
        Returns each record's new id, or None where the identity was already stored.
        """
        self._require_writable()
        slots = self._layer_slots()
        prepared = [writes.prepare_prompt(r, slots, value_dtype) for r in records]
        with writes.write_transaction(self.engine) as connection:
            return writes.insert_prompts(connection, prepared)

    def set_meta(self, values: Mapping[str, object]) -> None:
        self._require_writable()
        with writes.write_transaction(self.engine) as connection:
            writes.set_meta(connection, values)

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
        from locattr.storage.merge import merge_databases

        self._require_writable()
        added = merge_databases(self, other, batch_size=batch_size)
        self._slots = {}
        return added

    # -- reading -------------------------------------------------------------------------

    def get_prompt_count(self) -> int:
        return self._scalar(queries.prompt_count())

    def get_prompt(self, prompt_id: int) -> PromptInfo | None:
        with self.engine.connect() as connection:
            row = connection.execute(queries.prompt_by_id(prompt_id)).first()
        return _prompt_info(row) if row is not None else None

    def get_prompts(self, prompt_ids: Sequence[int]) -> list[PromptInfo]:
        """Several prompts in one statement, in the order asked (unknown ids are left out)."""
        with self.engine.connect() as connection:
            rows = connection.execute(queries.prompts_by_ids(prompt_ids)).all()
        by_id = {row[0]: row for row in rows}
        return [_prompt_info(by_id[i]) for i in prompt_ids if i in by_id]

    def get_graph(self, prompt_id: int) -> Graph | None:
        """The prompt's graph; None if there is no such prompt or it was stored index-only."""
        with self.engine.connect() as connection:
            blob = connection.execute(queries.prompt_graph(prompt_id)).scalar()
        return decode_graph(blob) if blob is not None else None

    def iter_prompts(self, *, page_size: int = 500) -> Iterator[PromptInfo]:
        """Every prompt in id order, read a page at a time."""
        after = 0
        while True:
            with self.engine.connect() as connection:
                rows = connection.execute(queries.prompts_after(after, page_size)).all()
            yield from (_prompt_info(row) for row in rows)
            if len(rows) < page_size:
                return
            after = rows[-1][0]

    def get_meta(self) -> dict[str, Any]:
        with self.engine.connect() as connection:
            rows = connection.execute(queries.meta_items()).all()
        return {key: orjson.loads(value) for key, value in rows}

    def get_layers(self) -> dict[str, int]:
        """Decomposed layers in model order: name -> number of components."""
        return {name: slot.n_components for name, slot in self._layer_slots(refresh=True).items()}

    def get_activation_contexts(self) -> dict[str, dict[str, Any]]:
        """Every stored activation context, keyed by component key."""
        with self.engine.connect() as connection:
            rows = connection.execute(queries.activation_contexts()).all()
        return {f"{layer}:{index}": orjson.loads(data) for layer, index, data in rows}

    def get_activation_context(self, key: str) -> dict[str, Any] | None:
        component_id = self._find_component_id(ComponentKey.parse(key))
        if component_id is None:
            return None
        data = self._scalar(queries.activation_context(component_id))
        return orjson.loads(data) if data is not None else None

    def get_unique_components(self) -> list[str]:
        """Keys of every component that fires in at least one stored prompt, in model order."""
        id_to_key = self._id_to_key()
        with self.engine.connect() as connection:
            ids = connection.execute(queries.active_component_ids()).scalars().all()
        return [id_to_key[i] for i in sorted(ids)]

    def list_components(
        self, *, layer: str | None = None, limit: int = 100
    ) -> list[ComponentSummary]:
        """Components that fire in stored prompts, most prompts first."""
        layer_id = None
        if layer is not None:
            slot = self._layer_slots(refresh=True).get(layer)
            if slot is None:
                return []
            layer_id = slot.id
        statement = queries.component_summaries(layer_id=layer_id, limit=queries.check_limit(limit))
        with self.engine.connect() as connection:
            rows = connection.execute(statement).all()
        return [
            ComponentSummary(
                key=f"{name}:{index}",
                layer=name,
                index=index,
                prompt_count=count,
                mean_max_ci=total / count if count else 0.0,
                max_max_ci=maximum,
                mean_ci=mean_ci,
            )
            for name, index, count, total, maximum, mean_ci in rows
        ]

    def get_component_stats(self, key: str, *, top_k: int = 10) -> ComponentStats | None:
        """How often and how strongly `key` fires; None if no such component exists."""
        component_id = self._find_component_id(ComponentKey.parse(key))
        if component_id is None:
            return None
        with self.engine.connect() as connection:
            count, total, maximum, mean_ci = connection.execute(
                queries.component_counters(component_id)
            ).one()
            top = connection.execute(queries.top_prompts_of_component(component_id, top_k)).all()
        return ComponentStats(
            key=str(ComponentKey.parse(key)),
            prompt_count=count,
            mean_max_ci=total / count if count else 0.0,
            max_max_ci=maximum,
            top_prompt_ids=[prompt_id for prompt_id, _ in top],
            mean_ci=mean_ci,
        )

    def find_prompts_with_components(
        self,
        keys: Iterable[str],
        require_all: bool = True,
        *,
        limit: int = 50,
        cursor: str | None = None,
    ) -> SearchPage:
        """Prompts where all (``require_all``) or any of the components fire, best first.

        Ranking: score = sum of each queried component's max CI in the prompt (absent
        components add 0), descending; ties by prompt id. Keys are de-duplicated; a malformed
        key raises `ComponentKeyError`; an unknown key matches nothing and is reported in
        ``unknown_keys``.
        """
        parsed = parse_keys(keys)
        if not parsed:
            raise queries.QueryError("give at least one component key ('layer:index')")
        queries.check_limit(limit)
        after = queries.SearchCursor.decode(cursor) if cursor else None
        ids: dict[int, str] = {}
        unknown: list[str] = []
        for key in parsed:
            component_id = self._find_component_id(key)
            if component_id is None:
                unknown.append(str(key))
            else:
                ids[component_id] = str(key)
        if not ids or (require_all and unknown):
            return SearchPage(hits=[], total=0, next_cursor=None, unknown_keys=unknown)
        component_ids = list(ids)
        with self.engine.connect() as connection:
            rows = connection.execute(
                queries.search_prompts(
                    component_ids, require_all=require_all, limit=limit, after=after
                )
            ).all()
            page = rows[:limit]
            total = (
                rows[0][2]
                if rows
                else self._count_matches(connection, component_ids, require_all, after)
            )
            matches = _group_matches(
                connection.execute(
                    queries.matches_in_prompts(component_ids, [r[0] for r in page])
                ).all()
                if page
                else [],
                ids,
            )
        hits = [SearchHit(pid, score, matches.get(pid, {})) for pid, score, _ in page]
        next_cursor = (
            queries.SearchCursor(page[-1][1], page[-1][0]).encode() if len(rows) > limit else None
        )
        return SearchPage(hits=hits, total=total, next_cursor=next_cursor, unknown_keys=unknown)

    # -- internals -----------------------------------------------------------------------

    def _count_matches(
        self,
        connection: Connection,
        component_ids: list[int],
        require_all: bool,
        after: queries.SearchCursor | None,
    ) -> int:
        if after is None:
            return 0
        return int(
            connection.execute(
                queries.count_matching_prompts(component_ids, require_all=require_all)
            ).scalar_one()
        )

    def _require_writable(self) -> None:
        if self.readonly:
            raise DatabaseError(f"{self.target.display} is open read-only")

    def _scalar(self, statement: Any) -> Any:
        with self.engine.connect() as connection:
            return connection.execute(statement).scalar()

    def layer_slots(self) -> dict[str, writes.LayerSlot]:
        """Layer name -> where its component ids live (read fresh)."""
        return dict(self._layer_slots(refresh=True))

    def _layer_slots(self, *, refresh: bool = False) -> dict[str, writes.LayerSlot]:
        if refresh or not self._slots:
            with self.engine.connect() as connection:
                self._slots = writes.read_layer_slots(connection)
        return self._slots

    def _find_component_id(self, key: ComponentKey) -> int | None:
        slot = self._layer_slots().get(key.layer) or self._layer_slots(refresh=True).get(key.layer)
        if slot is not None and key.index < slot.n_components:
            return slot.first_component_id + key.index
        return None

    def _component_id(self, key: ComponentKey) -> int:
        component_id = self._find_component_id(key)
        if component_id is None:
            raise DatabaseError(f"no component {key} in {self.target.display}")
        return component_id

    def _id_to_key(self) -> dict[int, str]:
        return {
            slot.first_component_id + index: f"{name}:{index}"
            for name, slot in self._layer_slots(refresh=True).items()
            for index in range(slot.n_components)
        }


def _prompt_info(row: Any) -> PromptInfo:
    prompt_id, identity, token_ids, tokens, source, n_nodes, n_edges, has_graph = row
    return PromptInfo(
        id=prompt_id,
        identity=identity,
        token_ids=orjson.loads(token_ids),
        tokens=orjson.loads(tokens),
        source=orjson.loads(source),
        n_nodes=n_nodes,
        n_edges=n_edges,
        has_graph=bool(has_graph),
    )


def _group_matches(
    rows: Sequence[Any], key_of: Mapping[int, str]
) -> dict[int, dict[str, ComponentMatch]]:
    grouped: dict[int, dict[str, ComponentMatch]] = {}
    for prompt_id, component_id, max_ci, positions in rows:
        grouped.setdefault(prompt_id, {})[key_of[component_id]] = ComponentMatch(
            max_ci=max_ci, positions=decode_positions(positions)
        )
    return grouped
