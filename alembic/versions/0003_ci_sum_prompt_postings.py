"""CI mass in the index, packed postings with it, and the index packed per prompt

Revision ID: 0003_ci_sum_prompt_postings
Revises: 0002_component_postings
Create Date: 2027-01-12 10:00:00.000000

- ``component_activations.ci_sum``: a component's CI summed over the positions where it fires
  (what search ranks by). Filled from each stored graph's nodes; prompts stored without a graph
  get ``max_ci`` times the number of positions, the most the index itself tells.
- ``component_postings`` is a cache: recreated empty with a ``ci_sum`` array (searches read the
  index until `locattr db optimize` repacks it; `locattr db upgrade` does that itself).
- ``prompt_postings``: the components firing in each prompt, packed (co-firing counts).
"""

from collections.abc import Sequence

import numpy as np
import sqlalchemy as sa
from alembic import op

from locattr.storage.codec import decode_graph

revision: str = "0003_ci_sum_prompt_postings"
down_revision: str | None = "0002_component_postings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_GRAPHS_PER_BATCH = 32


def upgrade() -> None:
    # NOT NULL needs a default for SQLite's ADD COLUMN; every row is set below.
    op.add_column(
        "component_activations",
        sa.Column("ci_sum", sa.Float(), nullable=False, server_default="0"),
    )
    bind = op.get_bind()
    bind.execute(
        sa.text("UPDATE component_activations SET ci_sum = max_ci * (length(positions) / 2)")
    )
    _sums_from_graphs(bind)

    op.drop_table("component_postings")
    op.create_table(
        "component_postings",
        sa.Column("component_id", sa.Integer(), nullable=False),
        sa.Column("through_prompt_id", sa.Integer(), nullable=False),
        sa.Column("prompt_ids", sa.LargeBinary(), nullable=False),
        sa.Column("max_ci", sa.LargeBinary(), nullable=False),
        sa.Column("ci_sum", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["component_id"], ["components.id"]),
        sa.PrimaryKeyConstraint("component_id"),
    )
    op.create_table(
        "prompt_postings",
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("component_ids", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("prompt_id"),
    )


def _sums_from_graphs(bind: sa.Connection) -> None:
    """Each index row's CI summed over its nodes in the prompt's stored graph (the sums that
    `locattr.storage.index_rows` computes for new prompts: float64, stored as float32)."""
    first = dict(bind.execute(sa.text("SELECT name, first_component_id FROM layers")).all())
    update = sa.text(
        "UPDATE component_activations SET ci_sum = :ci_sum "
        "WHERE component_id = :component_id AND prompt_id = :prompt_id"
    )
    after = 0
    while True:
        batch = bind.execute(
            sa.text(
                "SELECT id, graph FROM prompts WHERE id > :after AND graph IS NOT NULL "
                "ORDER BY id LIMIT :n"
            ),
            {"after": after, "n": _GRAPHS_PER_BATCH},
        ).all()
        if not batch:
            return
        rows = []
        for prompt_id, blob in batch:
            graph = decode_graph(bytes(blob))
            layer_first = np.array([first.get(name, -1) for name in graph.layers], np.int64)
            node_first = layer_first[graph.node_layer]
            indexed = node_first >= 0  # `wte` and `output` nodes have no index rows
            ids, where = np.unique(
                node_first[indexed] + graph.node_component[indexed], return_inverse=True
            )
            sums = np.bincount(where, weights=graph.node_ci[indexed].astype(np.float64))
            rows += [
                {"ci_sum": float(s), "component_id": c, "prompt_id": prompt_id}
                for c, s in zip(ids.tolist(), sums.astype(np.float32).tolist(), strict=True)
            ]
        if rows:
            bind.execute(update, rows)
        after = batch[-1][0]


def downgrade() -> None:
    op.drop_table("prompt_postings")
    op.drop_table("component_postings")
    op.create_table(
        "component_postings",
        sa.Column("component_id", sa.Integer(), nullable=False),
        sa.Column("through_prompt_id", sa.Integer(), nullable=False),
        sa.Column("prompt_ids", sa.LargeBinary(), nullable=False),
        sa.Column("max_ci", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["component_id"], ["components.id"]),
        sa.PrimaryKeyConstraint("component_id"),
    )
    op.drop_column("component_activations", "ci_sum")
