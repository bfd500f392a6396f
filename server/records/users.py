"""Web user, browser session and login-attempt tables."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from server.db import UtcDateTime, string_enum
from server.vocabulary import UserRole


class User(SQLModel, table=True):
    """A person who signs in to the web app. Sees only the subtree of ``org_id`` (None: everything,
    allowed for administrators only)."""

    # "user" is a reserved word in PostgreSQL.
    __tablename__ = "web_user"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True, description="Stored lower-case.")
    display_name: str = Field(max_length=100)
    password_hash: str = Field(max_length=255, description="argon2id, PHC string format.")
    role: UserRole = Field(sa_type=string_enum(UserRole))
    org_id: int | None = Field(default=None, foreign_key="organisation.id", index=True)
    created_at: datetime = Field(sa_type=UtcDateTime)
    last_login_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    disabled_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class WebSession(SQLModel, table=True):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is stored, so a
    leaked database does not hand out live sessions. Ending the row logs the browser out."""

    __tablename__ = "web_session"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    user_id: int = Field(foreign_key="web_user.id", index=True)
    csrf_token: str = Field(max_length=64)
    ip: str = Field(default="", max_length=64)
    created_at: datetime = Field(sa_type=UtcDateTime)
    last_seen_at: datetime = Field(sa_type=UtcDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class LoginAttempt(SQLModel, table=True):
    """One sign-in attempt, for rate limits. What was typed as the user name is not kept (people
    type passwords into it); ``user_id`` is set when it named an existing account."""

    __tablename__ = "login_attempt"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=UtcDateTime, index=True)
    user_id: int | None = Field(default=None, foreign_key="web_user.id", index=True)
    ip: str = Field(max_length=64, index=True)
    succeeded: bool
