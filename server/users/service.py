"""Web users: accounts with argon2id password hashes, sign-in with rate limits, browser sessions.

Sign-in never raises for a wrong password: the failed attempt (and its audit entry) must be
committed, and raising would roll the unit of work back. :func:`sign_in` returns the refusal
instead, and the caller shows it after the commit.

Rate limits (checked before the password, so a locked account cannot be probed):

* per account: :data:`ACCOUNT_FAILURE_LIMIT` failures within :data:`FAILURE_WINDOW` since its
  last successful sign-in lock it until the oldest of them leaves the window;
* per client address: :data:`ADDRESS_FAILURE_LIMIT` failures within the window, whatever names
  were typed (guessing across many accounts from one place).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ColumnElement, func
from sqlmodel import Session, col, select

from server.audit.service import record
from server.caller import Actor, Caller, Scope
from server.errors import (
    DomainError,
    InvalidCredentials,
    InvalidInput,
    LoginRateLimited,
    OrganisationNotFound,
    OrgRequired,
    UsernameTaken,
    WeakPassword,
)
from server.inputs import clean_text
from server.orgs.service import require_organisation, subtree_scope
from server.records.orgs import Organisation
from server.records.users import LoginAttempt, User, WebSession
from server.vocabulary import UserRole

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256  # argon2 takes any length; this only bounds the work per attempt
ACCOUNT_FAILURE_LIMIT = 5
ADDRESS_FAILURE_LIMIT = 20
FAILURE_WINDOW = timedelta(minutes=15)
SESSION_IDLE_TIMEOUT = timedelta(hours=4)
SESSION_MAX_AGE = timedelta(hours=12)
# Writing last_seen_at on every page view would turn every read into a write.
_LAST_SEEN_RESOLUTION = timedelta(minutes=5)

_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


@dataclass(frozen=True)
class WebUser:
    """The signed-in user behind a page: their :class:`~server.caller.Caller` (what services
    receive) and what the pages show about them."""

    caller: Caller
    user_id: int
    username: str
    display_name: str
    org_name: str
    session_id: int
    csrf_token: str

    # Read by the templates (the top bar, default choices in forms).
    @property
    def role(self) -> UserRole:
        return self.caller.role

    @property
    def org_id(self) -> int | None:
        return self.caller.org_id

    @property
    def scoped(self) -> bool:
        return self.caller.scope.org_ids is not None


def user_actor(user_id: int, display_name: str) -> Actor:
    """How the audit log names a web user."""
    return Actor(f"user:{user_id}", display_name)


@dataclass(frozen=True)
class SignedIn:
    user: User
    session_token: str  # goes into the cookie; only its hash is stored


@dataclass(frozen=True)
class SignInRefused:
    error: DomainError


def add_user(
    session: Session,
    *,
    username: str,
    display_name: str,
    password: str,
    role: UserRole,
    org_id: int | None,
    now: datetime,
    caller: Caller,
) -> User:
    """Create a user who may sign in with ``password``.

    Raises:
        InvalidInput: the user name is not 2–64 of a–z, 0–9, '.', '_', '-'.
        WeakPassword: shorter than :data:`MIN_PASSWORD_LENGTH` or one repeated character.
        OrgRequired: a secretary or organiser without an organisation.
        OrganisationNotFound: no such organisation, or outside the caller's scope.
        UsernameTaken: the name is in use.
    """
    name = username.strip().lower()
    if not _USERNAME.match(name):
        raise InvalidInput("用户名须为2至64位小写字母、数字或 . _ -，以字母或数字开头")
    check_password_strength(password)
    if role == UserRole.MEMBER:  # members reach their own pages by tapping their card, not a password
        raise InvalidInput("党员不需要网页账号：在留言亭刷卡扫码即可使用")
    if role != UserRole.ADMIN and org_id is None:
        raise OrgRequired("书记和组织员账号必须指定党组织")
    if org_id is not None:
        require_organisation(session, org_id)
        if not caller.sees_org(org_id):
            raise OrganisationNotFound(f"党组织 {org_id} 不存在")
    elif not caller.sees_org(None):
        raise OrgRequired("只能为本组织及下级组织创建账号")
    if session.exec(select(User.id).where(User.username == name)).first() is not None:
        raise UsernameTaken(f"用户名 {name} 已被使用")
    user = User(
        username=name,
        display_name=clean_text(display_name or name, field="姓名", max_length=100),
        password_hash=_hasher().hash(password),
        role=role,
        org_id=org_id,
        created_at=now,
    )
    session.add(user)
    session.flush()
    assert user.id is not None
    record(
        session,
        actor=caller.actor,
        action="user.create",
        object_type="user",
        object_id=user.id,
        org_id=org_id,
        at=now,
        detail={"username": name, "role": role.value},
    )
    return user


def check_password_strength(password: str) -> None:
    """Raises WeakPassword for a password we would not accept."""
    if len(password) < MIN_PASSWORD_LENGTH or len(set(password)) < 2:
        raise WeakPassword()
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"密码最长{MAX_PASSWORD_LENGTH}个字符")


def sign_in(
    session: Session, *, username: str, password: str, ip: str, now: datetime
) -> SignedIn | SignInRefused:
    """Check a user name and password, within the rate limits, and open a browser session.

    Every attempt is recorded (for the limits) and audited, successful or not.
    """
    name = username.strip().lower()
    user = session.exec(select(User).where(User.username == name)).first() if name else None
    if user is not None and user.disabled_at is not None:
        user = None  # a disabled account answers exactly like an unknown one
    user_id = user.id if user is not None else None
    ip = ip[:64]

    if _address_failures(session, ip=ip, now=now) >= ADDRESS_FAILURE_LIMIT or (
        user_id is not None and _account_failures(session, user_id=user_id, now=now) >= ACCOUNT_FAILURE_LIMIT
    ):
        _note_attempt(session, user=user, ip=ip, now=now, succeeded=False, why="rate_limited")
        return SignInRefused(LoginRateLimited())

    if user is None:
        _burn_verification_time(password)
        _note_attempt(session, user=None, ip=ip, now=now, succeeded=False, why="unknown_user")
        return SignInRefused(InvalidCredentials())
    if not _password_matches(user, password):
        _note_attempt(session, user=user, ip=ip, now=now, succeeded=False, why="wrong_password")
        return SignInRefused(InvalidCredentials())

    if _hasher().check_needs_rehash(user.password_hash):
        user.password_hash = _hasher().hash(password)
    user.last_login_at = now
    session.add(user)
    token = secrets.token_urlsafe(32)
    assert user.id is not None
    session.add(
        WebSession(
            token_hash=_token_hash(token),
            user_id=user.id,
            csrf_token=secrets.token_urlsafe(32),
            ip=ip,
            created_at=now,
            last_seen_at=now,
        )
    )
    _note_attempt(session, user=user, ip=ip, now=now, succeeded=True, why="")
    return SignedIn(user=user, session_token=token)


def resolve_session(session: Session, *, token: str, now: datetime) -> WebUser | None:
    """The signed-in user for a session cookie, or None (unknown, ended, expired, disabled)."""
    web_session = session.exec(select(WebSession).where(WebSession.token_hash == _token_hash(token))).first()
    if web_session is None or web_session.ended_at is not None or web_session.id is None:
        return None
    if (
        now - web_session.created_at > SESSION_MAX_AGE
        or now - web_session.last_seen_at > SESSION_IDLE_TIMEOUT
    ):
        return None
    user = session.get(User, web_session.user_id)
    if user is None or user.disabled_at is not None or user.id is None:
        return None
    if now - web_session.last_seen_at >= _LAST_SEEN_RESOLUTION:
        web_session.last_seen_at = now
        session.add(web_session)
    org_name = "全部党组织"
    if user.org_id is not None:
        organisation = session.get(Organisation, user.org_id)
        org_name = organisation.name if organisation is not None else ""
    caller = Caller(
        actor=user_actor(user.id, user.display_name),
        role=user.role,
        org_id=user.org_id,
        # A 党代表 sees no organisation's data: only the 留言亭 messages addressed to them.
        scope=Scope(frozenset())
        if user.role == UserRole.REPRESENTATIVE
        else subtree_scope(session, user.org_id),
        may_approve=user.role in (UserRole.ORGANISER, UserRole.ADMIN),  # docs/domain-rules.md §5
    )
    return WebUser(
        caller=caller,
        user_id=user.id,
        username=user.username,
        display_name=user.display_name,
        org_name=org_name,
        session_id=web_session.id,
        csrf_token=web_session.csrf_token,
    )


def sign_out(session: Session, *, web_session_id: int, caller: Caller, now: datetime) -> None:
    """End the browser session (the cookie stops working even if someone copied it)."""
    web_session = session.get(WebSession, web_session_id)
    if web_session is not None and web_session.ended_at is None:
        web_session.ended_at = now
        session.add(web_session)
        record(
            session,
            actor=caller.actor,
            action="user.logout",
            object_type="user",
            object_id=web_session.user_id,
            org_id=caller.org_id,
            at=now,
        )


def _note_attempt(
    session: Session, *, user: User | None, ip: str, now: datetime, succeeded: bool, why: str
) -> None:
    session.add(
        LoginAttempt(at=now, user_id=user.id if user is not None else None, ip=ip, succeeded=succeeded)
    )
    session.flush()
    record(
        session,
        actor=user_actor(user.id, user.display_name)
        if user is not None and user.id is not None
        else Actor("anonymous"),
        action="user.login" if succeeded else "user.login_failed",
        object_type="user",
        object_id=user.id if user is not None and user.id is not None else "unknown",
        org_id=user.org_id if user is not None else None,
        at=now,
        reason=why,
        detail={"ip": ip},
    )


def _account_failures(session: Session, *, user_id: int, now: datetime) -> int:
    since = now - FAILURE_WINDOW
    last_success = session.exec(
        select(func.max(LoginAttempt.at)).where(
            LoginAttempt.user_id == user_id, col(LoginAttempt.succeeded).is_(True)
        )
    ).one()
    if last_success is not None and last_success > since:
        since = last_success
    return _count_failures(session, since, col(LoginAttempt.user_id) == user_id)


def _address_failures(session: Session, *, ip: str, now: datetime) -> int:
    return _count_failures(session, now - FAILURE_WINDOW, col(LoginAttempt.ip) == ip)


def _count_failures(session: Session, since: datetime, condition: ColumnElement[bool]) -> int:
    count: int = session.exec(
        select(func.count())
        .select_from(LoginAttempt)
        .where(condition, col(LoginAttempt.succeeded).is_(False), col(LoginAttempt.at) > since)
    ).one()
    return count


def _password_matches(user: User, password: str) -> bool:
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        return _hasher().verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _burn_verification_time(password: str) -> None:
    # Answer an unknown name as slowly as a wrong password, so timing does not reveal accounts.
    with contextlib.suppress(VerificationError):
        _hasher().verify(_dummy_hash(), password[:MAX_PASSWORD_LENGTH])


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()  # argon2id with the library's current recommended parameters


@cache
def _dummy_hash() -> str:
    return _hasher().hash(secrets.token_urlsafe(16))


def _token_hash(token: str) -> str:
    # The token is 256 random bits, so a plain hash cannot be reversed by guessing.
    return hashlib.sha256(token.encode()).hexdigest()
