"""The index in integers, read by prompt through its component lists

Revision ID: 0006_compact_index
Revises: 0005_compressed_contexts
Create Date: 2026-12-03 19:00:00.000000

- ``component_activations.max_ci`` and ``ci_sum``: integers in units of 1e-6 (the original
  system's 6 decimals; `locattr.storage.index_rows.CI_UNIT`) instead of 8-byte floats.
- ``ix_component_activations_prompt`` is dropped: a prompt's components are its
  ``prompt_postings`` row, which every prompt with index rows now has (written with it), packed
  as `locattr.storage.component_lists` packs them. Existing rows are rebuilt from the index.
- ``component_postings`` (a cache, with CI values in the new units) is emptied; `locattr db
  upgrade` repacks it.
- Activation contexts written from now on may leave their example tokens to the stored
  vocabulary (`locattr.storage.context_blobs`); those already stored stay as they are, and a
  downgrade stores every context whole again.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import sqlalchemy as sa
from alembic import op

from locattr.storage.component_lists import pack
from locattr.storage.context_blobs import ContextDecoder, compressor, document

revision: str = "0006_compact_index"
down_revision: str | None = "0005_compressed_contexts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNITS_PER_CI = 1_000_000
_PROMPTS_PER_BATCH = 512
_PROMPT_INDEX = "ix_component_activations_prompt"


def upgrade() -> None:
    bind = op.get_bind()
    bind.execute(sa.text("DELETE FROM component_postings"))
    _rebuild_prompt_postings(bind)  # through the prompt index, before it goes
    if bind.dialect.name == "postgresql":
        op.drop_index(_PROMPT_INDEX, table_name="component_activations")
    _convert_ci_columns(
        bind,
        sa.BigInteger(),
        postgresql=f"round({{column}} * {_UNITS_PER_CI})::bigint",
        sqlite=f"CAST(round({{column}} * {_UNITS_PER_CI}) AS INTEGER)",
    )


def _rebuild_prompt_postings(bind: sa.Connection) -> None:
    """Every prompt's component list, packed, from the index rows (a block of prompts at a
    time)."""
    bind.execute(sa.text("DELETE FROM prompt_postings"))
    insert = sa.text(
        "INSERT INTO prompt_postings (prompt_id, component_ids) VALUES (:prompt_id, :ids)"
    )
    last = bind.execute(sa.text("SELECT coalesce(max(id), 0) FROM prompts")).scalar_one()
    for first in range(0, int(last), _PROMPTS_PER_BATCH):
        rows = bind.execute(
            sa.text(
                "SELECT prompt_id, component_id FROM component_activations "
                "WHERE prompt_id > :first AND prompt_id <= :last ORDER BY prompt_id, component_id"
            ),
            {"first": first, "last": first + _PROMPTS_PER_BATCH},
        ).all()
        if not rows:
            continue
        pairs = np.array(rows, dtype=np.int64)
        starts = np.flatnonzero(np.diff(pairs[:, 0], prepend=-1) != 0).tolist()
        bind.execute(
            insert,
            [
                {"prompt_id": int(pairs[a, 0]), "ids": pack(pairs[a:b, 1])}
                for a, b in zip(starts, [*starts[1:], len(pairs)], strict=True)
            ],
        )


def _convert_ci_columns(
    bind: sa.Connection, new_type: sa.types.TypeEngine[Any], *, postgresql: str, sqlite: str
) -> None:
    """`max_ci` and `ci_sum` to `new_type`, each value computed by the dialect's SQL (with
    ``{column}`` standing for the column). SQLite cannot change a column's type: there a new
    `component_activations` (WITHOUT ROWID, no prompt index) is filled from the old one."""
    if bind.dialect.name == "postgresql":
        type_name = new_type.compile(dialect=bind.dialect)
        bind.execute(
            sa.text(
                "ALTER TABLE component_activations "
                + ", ".join(
                    f"ALTER COLUMN {c} TYPE {type_name} USING {postgresql.format(column=c)}"
                    for c in ("max_ci", "ci_sum")
                )
            )
        )
        return
    op.create_table(
        "component_activations_new",
        sa.Column("component_id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("max_ci", new_type, nullable=False),
        sa.Column("positions", sa.LargeBinary(), nullable=False),
        sa.Column("ci_sum", new_type, nullable=False),
        sa.ForeignKeyConstraint(["component_id"], ["components.id"]),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("component_id", "prompt_id"),
        sqlite_with_rowid=False,
    )
    max_ci, ci_sum = (sqlite.format(column=c) for c in ("max_ci", "ci_sum"))
    bind.execute(
        sa.text(
            "INSERT INTO component_activations_new "
            "(component_id, prompt_id, max_ci, positions, ci_sum) "
            f"SELECT component_id, prompt_id, {max_ci}, positions, {ci_sum} "
            "FROM component_activations"
        )
    )
    op.drop_table("component_activations")
    op.rename_table("component_activations_new", "component_activations")


def downgrade() -> None:
    bind = op.get_bind()
    _store_contexts_whole(bind)
    bind.execute(sa.text("DELETE FROM component_postings"))
    # 0005 read prompts without a packed list from the index: its own format is rebuilt by
    # `locattr db optimize` there.
    bind.execute(sa.text("DELETE FROM prompt_postings"))
    conversion = f"{{column}} / {_UNITS_PER_CI}.0"
    _convert_ci_columns(bind, sa.Float(), postgresql=conversion, sqlite=conversion)
    op.create_index(_PROMPT_INDEX, "component_activations", ["prompt_id"])


def _store_contexts_whole(bind: sa.Connection) -> None:
    """Every activation context compressed again with its tokens (0005 knows no other form)."""
    dictionaries = {
        i: bytes(data)
        for i, data in bind.execute(
            sa.text("SELECT id, data FROM activation_context_dictionaries")
        ).all()
    }
    stored = bind.execute(sa.text("SELECT value FROM meta WHERE key = 'vocabulary'")).scalar()
    vocabulary = orjson.loads(stored) if stored is not None else None
    decoder = ContextDecoder(dictionaries, lambda: vocabulary)
    compressors = {i: compressor(data) for i, data in dictionaries.items()}
    alone = compressor(None)
    rows = bind.execute(
        sa.text("SELECT component_id, data, dictionary_id FROM activation_contexts")
    ).all()
    if rows:
        bind.execute(
            sa.text("UPDATE activation_contexts SET data = :data WHERE component_id = :id"),
            [
                {
                    "data": compressors.get(d, alone).compress(
                        document(decoder.decode(bytes(data), d))
                    ),
                    "id": i,
                }
                for i, data, d in rows
            ],
        )
