"""Member gender (性别), filled by the roster import.

Revision ID: 0003_member_gender
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_member_gender"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("member") as batch_op:
        batch_op.add_column(sa.Column("gender", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("member") as batch_op:
        batch_op.drop_column("gender")
