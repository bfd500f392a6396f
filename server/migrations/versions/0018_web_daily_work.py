"""Daily web work (placeholder, filled by #12 work).

Revision ID: 0018_web_daily_work
Revises: 0017_meeting_records
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0018_web_daily_work"
down_revision: str | Sequence[str] | None = "0017_meeting_records"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
