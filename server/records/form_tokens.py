"""Web form submissions remembered by their idempotency token (``server.web.form_tokens``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from server.db import UtcDateTime


class FormSubmission(SQLModel, table=True):
    """A form a signed-in user sent, by the random token the page gave it.

    Written in the same transaction as what the form changed, so it exists exactly when that
    change does; a repeat of the token (a double click, a resend) answers from here instead of
    doing the work again. Rows older than a day are purged.
    """

    __tablename__ = "form_submission"
    __table_args__ = (UniqueConstraint("user_id", "token"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="web_user.id")
    token: str = Field(max_length=64)
    path: str = Field(max_length=300, description="The path posted to; a token answers only there.")
    redirect_to: str | None = Field(default=None, max_length=2000, description="Where the first answer sent.")
    toast: str | None = Field(default=None, max_length=500, description="The message it showed there.")
    toast_level: str | None = Field(default=None, max_length=16)
    created_at: datetime = Field(sa_type=UtcDateTime, index=True)
