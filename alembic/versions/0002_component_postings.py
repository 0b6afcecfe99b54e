"""component postings

Revision ID: 0002_component_postings
Revises: 0001_initial
Create Date: 2026-11-26 18:20:33.687174
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_component_postings"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "component_postings",
        sa.Column("component_id", sa.Integer(), nullable=False),
        sa.Column("through_prompt_id", sa.Integer(), nullable=False),
        sa.Column("prompt_ids", sa.LargeBinary(), nullable=False),
        sa.Column("max_ci", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["component_id"],
            ["components.id"],
        ),
        sa.PrimaryKeyConstraint("component_id"),
    )


def downgrade() -> None:
    op.drop_table("component_postings")
