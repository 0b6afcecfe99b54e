"""Corpus attributions and the edge index

Revision ID: 0004_corpus_attributions_edges
Revises: 0003_ci_sum_prompt_postings
Create Date: 2026-12-03 12:40:00.000000

- ``corpus_attributions``: every component pair's edge values summed over the stored graphs.
- ``edge_postings``: per component pair, the prompts where its strongest edge reaches a floor.
- ``corpus_deltas``: what each write batch adds to those two, until folded in.
- ``cofiring_counts``: co-firing counts of the components firing in many prompts (a cache,
  filled by `locattr db optimize`, which `locattr db upgrade` runs).

Both are written with each prompt from now on. A database that already holds prompts gets them
empty and marked stale (meta ``corpus_tables_stale``) until `locattr db aggregate` fills them
from the stored graphs (`locattr db upgrade` runs it).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_corpus_attributions_edges"
down_revision: str | None = "0003_ci_sum_prompt_postings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STALE = '"built before corpus attributions existed"'


def upgrade() -> None:
    op.create_table(
        "corpus_attributions",
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("total_abs", sa.BigInteger(), nullable=False),
        sa.Column("prompt_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["source_id"], ["components.id"]),
        sa.ForeignKeyConstraint(["target_id"], ["components.id"]),
        sa.PrimaryKeyConstraint("source_id", "target_id"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_corpus_attributions_target", "corpus_attributions", ["target_id"])
    op.create_table(
        "corpus_deltas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pair_sums", sa.LargeBinary(), nullable=False),
        sa.Column("strong_edges", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "edge_postings",
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("prompt_ids", sa.LargeBinary(), nullable=False),
        sa.Column("edge_values", sa.LargeBinary(), nullable=False),
        sa.Column("positions", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["source_id"], ["components.id"]),
        sa.ForeignKeyConstraint(["target_id"], ["components.id"]),
        sa.PrimaryKeyConstraint("source_id", "target_id"),
    )
    op.create_table(
        "cofiring_counts",
        sa.Column("component_id", sa.Integer(), nullable=False),
        sa.Column("through_prompt_id", sa.Integer(), nullable=False),
        sa.Column("counts", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["component_id"], ["components.id"]),
        sa.PrimaryKeyConstraint("component_id"),
    )
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT 1 FROM prompts LIMIT 1")).first() is not None:
        bind.execute(
            sa.text("INSERT INTO meta (key, value) VALUES ('corpus_tables_stale', :why)"),
            {"why": _STALE},
        )


def downgrade() -> None:
    op.execute("DELETE FROM meta WHERE key IN ('corpus_tables_stale', 'edge_index_min_abs')")
    op.drop_table("cofiring_counts")
    op.drop_table("edge_postings")
    op.drop_table("corpus_deltas")
    op.drop_index("ix_corpus_attributions_target", table_name="corpus_attributions")
    op.drop_table("corpus_attributions")
