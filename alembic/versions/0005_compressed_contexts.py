"""Activation contexts stored compressed

Revision ID: 0005_compressed_contexts
Revises: 0004_corpus_attributions_edges
Create Date: 2026-12-03 14:00:00.000000

- ``activation_context_dictionaries``: zstd dictionaries trained on contexts stored together.
- ``activation_contexts.data``: the context JSON zstd-compressed (bytes, no longer text) with
  dictionary ``dictionary_id`` (NULL: compressed alone), as `locattr.storage.context_blobs`
  writes it. Existing contexts are converted: one dictionary trained on all of them.
"""

from collections.abc import Sequence

import orjson
import sqlalchemy as sa
from alembic import op

from locattr.storage.context_blobs import ContextDecoder, compressor, document, train_dictionary

revision: str = "0005_compressed_contexts"
down_revision: str | None = "0004_corpus_attributions_edges"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ROWS_PER_BATCH = 2000
_TRAINING_CHARS = 8 << 20
_FOREIGN_KEY = "fk_activation_contexts_dictionary"


def upgrade() -> None:
    op.create_table(
        "activation_context_dictionaries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("activation_contexts") as batch:
        batch.add_column(sa.Column("dictionary_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("compressed", sa.LargeBinary(), nullable=True))
        batch.create_foreign_key(
            _FOREIGN_KEY, "activation_context_dictionaries", ["dictionary_id"], ["id"]
        )
    bind = op.get_bind()
    _compress_rows(bind)
    with op.batch_alter_table("activation_contexts") as batch:
        batch.drop_column("data")
        batch.alter_column(
            "compressed", new_column_name="data", existing_type=sa.LargeBinary(), nullable=False
        )


def _compress_rows(bind: sa.Connection) -> None:
    """Every context compressed as `locattr.storage.writes` stores contexts given in one call:
    with one dictionary trained on them (on every k-th, up to about 8 MB of JSON)."""
    total = bind.execute(sa.text("SELECT sum(length(data)) FROM activation_contexts")).scalar()
    stride = max(1, -(-int(total or 0) // _TRAINING_CHARS))
    samples = bind.execute(
        sa.text("SELECT data FROM activation_contexts WHERE component_id % :k = 0"), {"k": stride}
    ).all()
    dictionary = train_dictionary([_utf8(data) for (data,) in samples])
    dictionary_id = None
    if dictionary is not None:
        dictionary_id = bind.execute(
            sa.text("INSERT INTO activation_context_dictionaries (data) VALUES (:d) RETURNING id"),
            {"d": dictionary},
        ).scalar_one()
    compress = compressor(dictionary).compress
    update = sa.text(
        "UPDATE activation_contexts SET compressed = :blob, dictionary_id = :dictionary_id "
        "WHERE component_id = :component_id"
    )
    after = -1
    while True:
        batch = bind.execute(
            sa.text(
                "SELECT component_id, data FROM activation_contexts WHERE component_id > :after "
                "ORDER BY component_id LIMIT :n"
            ),
            {"after": after, "n": _ROWS_PER_BATCH},
        ).all()
        if not batch:
            return
        bind.execute(
            update,
            [
                {
                    "blob": compress(document(orjson.loads(data))),
                    "dictionary_id": dictionary_id,
                    "component_id": component_id,
                }
                for component_id, data in batch
            ],
        )
        after = batch[-1][0]


def _utf8(data: str | bytes) -> bytes:
    return data.encode() if isinstance(data, str) else bytes(data)


def downgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("activation_contexts") as batch:
        batch.add_column(sa.Column("text", sa.Text(), nullable=True))
    dictionaries = dict(
        bind.execute(sa.text("SELECT id, data FROM activation_context_dictionaries")).all()
    )
    decoder = ContextDecoder(dictionaries, lambda: None)  # 0006's downgrade stored them whole
    rows = bind.execute(
        sa.text("SELECT component_id, data, dictionary_id FROM activation_contexts")
    ).all()
    if rows:
        bind.execute(
            sa.text("UPDATE activation_contexts SET text = :text WHERE component_id = :id"),
            [
                {"text": orjson.dumps(decoder.decode(bytes(data), d)).decode(), "id": i}
                for i, data, d in rows
            ],
        )
    with op.batch_alter_table("activation_contexts") as batch:
        batch.drop_constraint(_FOREIGN_KEY, type_="foreignkey")
        batch.drop_column("dictionary_id")
        batch.drop_column("data")
        batch.alter_column("text", new_column_name="data", existing_type=sa.Text(), nullable=False)
    op.drop_table("activation_context_dictionaries")
