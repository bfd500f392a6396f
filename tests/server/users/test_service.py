"""Web users: accounts, sign-in with rate limits, sessions; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from server.audit.service import verify_chain
from server.caller import CLI_CALLER
from server.db import unit_of_work
from server.errors import (
    InvalidCredentials,
    InvalidInput,
    LoginRateLimited,
    OrganisationNotFound,
    OrgRequired,
    UsernameTaken,
    WeakPassword,
)
from server.orgs.service import add_organisation
from server.records.users import User, WebSession
from server.users.service import (
    ACCOUNT_FAILURE_LIMIT,
    FAILURE_WINDOW,
    SESSION_IDLE_TIMEOUT,
    SESSION_MAX_AGE,
    SignedIn,
    SignInRefused,
    WebUser,
    add_user,
    resolve_session,
    sign_in,
    sign_out,
)
from server.vocabulary import OrgKind, UserRole

NOW = datetime.fromisoformat("2026-03-02T09:00:00+08:00")
PASSWORD = "a-long-enough-password"


@pytest.fixture
def orgs(engine: Engine) -> tuple[int, int]:
    """(committee, branch)."""
    with unit_of_work(engine) as session:
        committee = add_organisation(
            session, name="街道党工委", kind=OrgKind.BASIC_COMMITTEE, parent_id=None, now=NOW
        )
        assert committee.id is not None
        branch = add_organisation(
            session, name="第一党支部", kind=OrgKind.BRANCH, parent_id=committee.id, now=NOW
        )
        assert branch.id is not None
        return committee.id, branch.id


def make_user(
    engine: Engine, org_id: int | None, *, name: str = "chen", role: UserRole = UserRole.SECRETARY
) -> int:
    with unit_of_work(engine) as session:
        user = add_user(
            session,
            username=name,
            display_name="陈书记",
            password=PASSWORD,
            role=role,
            org_id=org_id,
            now=NOW,
            caller=CLI_CALLER,
        )
        assert user.id is not None
        return user.id


def attempt(
    engine: Engine, name: str, password: str, *, at: datetime = NOW, ip: str = "10.0.0.1"
) -> SignedIn | SignInRefused:
    with unit_of_work(engine) as session:
        return sign_in(session, username=name, password=password, ip=ip, now=at)


def viewer_for(engine: Engine, token: str, at: datetime) -> WebUser | None:
    with unit_of_work(engine) as session:
        return resolve_session(session, token=token, now=at)


class TestAddUser:
    def test_the_password_is_stored_as_an_argon2id_hash(self, engine: Engine, orgs: tuple[int, int]) -> None:
        make_user(engine, orgs[1])
        with Session(engine) as session:
            user = session.exec(select(User)).one()
        assert user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash

    @pytest.mark.parametrize(
        ("username", "password", "role", "org", "error"),
        [
            ("chen", "short", UserRole.SECRETARY, "branch", WeakPassword),
            ("chen", "aaaaaaaaaaaa", UserRole.SECRETARY, "branch", WeakPassword),
            ("陈书记", PASSWORD, UserRole.SECRETARY, "branch", InvalidInput),
            ("chen", PASSWORD, UserRole.SECRETARY, None, OrgRequired),
            ("chen", PASSWORD, UserRole.ORGANISER, None, OrgRequired),
            ("chen", PASSWORD, UserRole.SECRETARY, 9999, OrganisationNotFound),
        ],
    )
    def test_refusals(
        self,
        engine: Engine,
        orgs: tuple[int, int],
        username: str,
        password: str,
        role: UserRole,
        org: str | int | None,
        error: type[Exception],
    ) -> None:
        org_id = orgs[1] if org == "branch" else org
        assert org_id is None or isinstance(org_id, int)
        with pytest.raises(error), unit_of_work(engine) as session:
            add_user(
                session,
                username=username,
                display_name="",
                password=password,
                role=role,
                org_id=org_id,
                now=NOW,
                caller=CLI_CALLER,
            )

    def test_names_are_unique_whatever_the_case(self, engine: Engine, orgs: tuple[int, int]) -> None:
        make_user(engine, orgs[1], name="chen")
        with pytest.raises(UsernameTaken):
            make_user(engine, orgs[1], name="CHEN")

    def test_an_administrator_may_see_everything(self, engine: Engine, orgs: tuple[int, int]) -> None:
        make_user(engine, None, name="root", role=UserRole.ADMIN)
        signed = attempt(engine, "root", PASSWORD)
        assert isinstance(signed, SignedIn)
        viewer = viewer_for(engine, signed.session_token, NOW)
        assert viewer is not None
        assert viewer.caller.scope.org_ids is None
        assert viewer.caller.sees_org(orgs[0])


class TestSignIn:
    def test_a_session_sees_the_users_subtree_only(self, engine: Engine, orgs: tuple[int, int]) -> None:
        committee, branch = orgs
        make_user(engine, branch)
        signed = attempt(engine, " Chen ", PASSWORD)  # names are trimmed and compared in lower case
        assert isinstance(signed, SignedIn)
        viewer = viewer_for(engine, signed.session_token, NOW)
        assert viewer is not None
        assert viewer.caller.sees_org(branch)
        assert not viewer.caller.sees_org(committee)
        assert viewer.org_name == "第一党支部"

    def test_the_token_itself_is_not_stored(self, engine: Engine, orgs: tuple[int, int]) -> None:
        make_user(engine, orgs[1])
        signed = attempt(engine, "chen", PASSWORD)
        assert isinstance(signed, SignedIn)
        with Session(engine) as session:
            stored = session.exec(select(WebSession)).one()
        assert signed.session_token not in stored.token_hash

    def test_a_wrong_password_is_refused(self, engine: Engine, orgs: tuple[int, int]) -> None:
        make_user(engine, orgs[1])
        refused = attempt(engine, "chen", "wrong-password")
        assert isinstance(refused, SignInRefused)
        assert isinstance(refused.error, InvalidCredentials)

    def test_lockout_lifts_when_the_failures_leave_the_window(
        self, engine: Engine, orgs: tuple[int, int]
    ) -> None:
        make_user(engine, orgs[1])
        for minute in range(ACCOUNT_FAILURE_LIMIT):
            attempt(engine, "chen", "wrong-password", at=NOW + timedelta(minutes=minute))
        locked = attempt(engine, "chen", PASSWORD, at=NOW + timedelta(minutes=5))
        assert isinstance(locked, SignInRefused)
        assert isinstance(locked.error, LoginRateLimited)
        later = NOW + FAILURE_WINDOW + timedelta(minutes=1)  # the first failure has aged out
        assert isinstance(attempt(engine, "chen", PASSWORD, at=later), SignedIn)

    def test_a_successful_sign_in_resets_the_count(self, engine: Engine, orgs: tuple[int, int]) -> None:
        make_user(engine, orgs[1])
        for second in range(ACCOUNT_FAILURE_LIMIT - 1):
            attempt(engine, "chen", "wrong-password", at=NOW + timedelta(seconds=second))
        assert isinstance(attempt(engine, "chen", PASSWORD, at=NOW + timedelta(seconds=30)), SignedIn)
        for second in range(ACCOUNT_FAILURE_LIMIT - 1):
            attempt(engine, "chen", "wrong-password", at=NOW + timedelta(seconds=40 + second))
        assert isinstance(attempt(engine, "chen", PASSWORD, at=NOW + timedelta(seconds=60)), SignedIn)

    def test_a_disabled_account_cannot_sign_in(self, engine: Engine, orgs: tuple[int, int]) -> None:
        user_id = make_user(engine, orgs[1])
        with unit_of_work(engine) as session:
            user = session.get(User, user_id)
            assert user is not None
            user.disabled_at = NOW
            session.add(user)
        refused = attempt(engine, "chen", PASSWORD)
        assert isinstance(refused, SignInRefused)
        assert isinstance(refused.error, InvalidCredentials)

    def test_every_attempt_is_in_the_audit_chain(self, engine: Engine, orgs: tuple[int, int]) -> None:
        make_user(engine, orgs[1])
        attempt(engine, "chen", "wrong-password")
        attempt(engine, "nobody", "wrong-password")
        attempt(engine, "chen", PASSWORD)
        with Session(engine) as session:
            assert verify_chain(session) is None


class TestSessions:
    def test_idle_sessions_expire(self, engine: Engine, orgs: tuple[int, int]) -> None:
        make_user(engine, orgs[1])
        signed = attempt(engine, "chen", PASSWORD)
        assert isinstance(signed, SignedIn)
        assert viewer_for(engine, signed.session_token, NOW + SESSION_IDLE_TIMEOUT - timedelta(minutes=1))
        assert viewer_for(engine, signed.session_token, NOW + SESSION_IDLE_TIMEOUT * 2) is None

    def test_activity_keeps_a_session_alive_up_to_its_maximum_age(
        self, engine: Engine, orgs: tuple[int, int]
    ) -> None:
        make_user(engine, orgs[1])
        signed = attempt(engine, "chen", PASSWORD)
        assert isinstance(signed, SignedIn)
        at = NOW
        while at + SESSION_IDLE_TIMEOUT / 2 < NOW + SESSION_MAX_AGE:
            at += SESSION_IDLE_TIMEOUT / 2
            assert viewer_for(engine, signed.session_token, at) is not None
        assert viewer_for(engine, signed.session_token, NOW + SESSION_MAX_AGE + timedelta(minutes=1)) is None

    def test_signing_out_ends_the_session(self, engine: Engine, orgs: tuple[int, int]) -> None:
        make_user(engine, orgs[1])
        signed = attempt(engine, "chen", PASSWORD)
        assert isinstance(signed, SignedIn)
        viewer = viewer_for(engine, signed.session_token, NOW)
        assert viewer is not None
        with unit_of_work(engine) as session:
            sign_out(session, web_session_id=viewer.session_id, caller=viewer.caller, now=NOW)
        assert viewer_for(engine, signed.session_token, NOW) is None

    def test_an_unknown_token_is_nobody(self, engine: Engine, orgs: tuple[int, int]) -> None:
        assert viewer_for(engine, "not-a-token", NOW) is None
