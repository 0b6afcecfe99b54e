"""initial schema

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-26 17:23:32.074956
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "layers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("n_components", sa.Integer(), nullable=False),
        sa.Column("first_component_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "meta",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "prompts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("identity", sa.String(length=500), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("n_tokens", sa.Integer(), nullable=False),
        sa.Column("token_ids", sa.Text(), nullable=False),
        sa.Column("tokens", sa.Text(), nullable=False),
        sa.Column("n_nodes", sa.Integer(), nullable=False),
        sa.Column("n_edges", sa.BigInteger(), nullable=False),
        sa.Column("n_components", sa.Integer(), nullable=False),
        sa.Column("graph", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("identity"),
    )
    op.create_table(
        "components",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("layer_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("prompt_count", sa.Integer(), nullable=False),
        sa.Column("sum_max_ci", sa.Float(), nullable=False),
        sa.Column("max_max_ci", sa.Float(), nullable=False),
        sa.Column("mean_ci", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["layer_id"],
            ["layers.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("layer_id", "index", name="uq_components_layer_index"),
    )
    op.create_table(
        "activation_contexts",
        sa.Column("component_id", sa.Integer(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["component_id"],
            ["components.id"],
        ),
        sa.PrimaryKeyConstraint("component_id"),
    )
    op.create_table(
        "component_activations",
        sa.Column("component_id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("max_ci", sa.Float(), nullable=False),
        sa.Column("positions", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["component_id"],
            ["components.id"],
        ),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("component_id", "prompt_id"),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("component_activations", schema=None) as batch_op:
        batch_op.create_index("ix_component_activations_prompt", ["prompt_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("component_activations", schema=None) as batch_op:
        batch_op.drop_index("ix_component_activations_prompt")

    op.drop_table("component_activations")
    op.drop_table("activation_contexts")
    op.drop_table("components")
    op.drop_table("prompts")
    op.drop_table("meta")
    op.drop_table("layers")
