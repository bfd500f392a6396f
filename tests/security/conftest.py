"""Security-suite fixtures: two branches' worth of everything, served by the real app, on SQLite
and on PostgreSQL.

* ``realm`` (module-scoped, ``[sqlite]`` and ``[pg]``): one database per test module, seeded with
  :class:`~tests.web.world.WebWorld` (a 基层党委 with branches A and B, a secretary each, the
  committee's organiser, an administrator) and, for each branch, one object of every type a
  caller could reach: member with a bound card, event, venue, enrolled kiosk, leave request,
  manual attendance, 刷卡绑定 request, transfer request, unmatched tap. Each branch has an API token
  and a signed-in web client. Tests that only read (or try writes that must be refused) share it.
* ``fresh_realm``: the same, per test, for tests that change things on purpose.
* ``count_rows(engine)``: rows per table, to show that a refused request wrote nothing.
* ``sign_in(client, account)``: the web sign-in form, returning the page's CSRF token.

Everything is created through the real services and the real HTTP API, as an attacker would
find it on a running server.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, func, inspect, select, table

from schemas.messages import CardFacts, EnrollRequest, TapBatch
from server.app import create_app
from server.auth.service import create_token
from server.caller import CLI_CALLER
from server.cards.service import bind_card
from server.clock import utc_now
from server.config import ServerSettings
from server.db import make_engine, unit_of_work
from server.keyring import Keyring
from server.kiosks.service import add_kiosk, enroll_kiosk
from server.records.supervision import Reminder
from server.supervision.findings import Finding, org_subject
from server.supervision.service import EscalationPolicy, apply_findings
from server.transfers.calendar import make_calendar
from server.vocabulary import ReminderLevel, RuleFamily, TokenRole
from tests.conftest import create_pg_database
from tests.server.conftest import FakeClock, sqlite_template  # noqa: F401  (a fixture, used by name)
from tests.server.signing import KioskKeys, card, tap_payload
from tests.web.world import CHEN_CARD, WebAccount, WebWorld, build_web_world

SECRET = "security-suite-secret-5b8e1d0c7a2f4e6b9c3d1a0f8e7d6c5b"
B_CARD = card("3104393000000077771", "04B0B0B0B0B001")  # 赵雪梅's card (branch B)
DATABASES = ["sqlite", pytest.param("pg", marks=pytest.mark.pg)]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_in(client: TestClient, account: WebAccount) -> str:
    """Sign in through the form; returns the CSRF token that later posts must carry."""
    page = client.get("/web/login")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match is not None, page.text
    response = client.post(
        "/web/login",
        data={"username": account.username, "password": account.password, "csrf_token": match.group(1)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    dashboard = client.get("/web/")
    match = re.search(r'name="csrf_token" value="([^"]+)"', dashboard.text)
    assert match is not None
    return match.group(1)


def post_taps(client: TestClient, batch_json: str) -> httpx.Response:
    return client.post("/api/v1/taps", content=batch_json, headers={"Content-Type": "application/json"})


def count_rows(engine: Engine) -> dict[str, int]:
    """Rows in every table of the database (alembic's bookkeeping included)."""
    counts: dict[str, int] = {}
    with engine.connect() as connection:
        for name in inspect(connection).get_table_names():
            counts[name] = connection.execute(select(func.count()).select_from(table(name))).scalar_one()
    return counts


@dataclass
class Side:
    """One branch and one object of every kind that belongs to it."""

    name: str  # the branch's name, which must not show up on the other side's pages
    org_id: int
    member_id: int
    member_name: str
    event_id: int
    event_title: str
    venue_id: int
    kiosk_id: str
    keys: KioskKeys
    card: CardFacts
    binding_id: int
    api: dict[str, str]  # Authorization header of a secretary token of this branch
    web: TestClient  # signed in as this branch's secretary
    csrf: str
    leave_id: int = 0
    enrol_session_id: int = 0
    transfer_id: int = 0
    transfer_name: str = ""
    unmatched_tap_id: int = 0
    reminder_id: int = 0
    seq: int = field(default=0)

    def tap(self, card_facts: CardFacts, *, at: datetime) -> str:
        """A signed one-tap batch from this side's kiosk, as JSON."""
        self.seq += 1
        payload = tap_payload(kiosk_id=self.kiosk_id, seq=self.seq, at=at, card_facts=card_facts)
        return TapBatch(envelopes=[self.keys.seal(payload)]).model_dump_json()


@dataclass
class Realm:
    kind: str  # "sqlite" or "pg"
    settings: ServerSettings
    engine: Engine
    keyring: Keyring
    clock: FakeClock
    world: WebWorld
    client: TestClient  # the app, with no credentials at all
    admin_api: dict[str, str]
    admin_web: TestClient
    admin_csrf: str
    a: Side
    b: Side

    def sides(self) -> tuple[Side, Side]:
        return self.a, self.b


def _database(kind: str, request: pytest.FixtureRequest, directory: Path) -> tuple[str, Any]:
    if kind == "sqlite":
        path = directory / "ecard.sqlite"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}", lambda: None
    server, template = request.getfixturevalue("pg_server"), request.getfixturevalue("pg_template")
    return create_pg_database(server, prefix="ecard_sec_", template=template)


def _ok(response: httpx.Response) -> Any:
    assert response.status_code in (200, 201), response.text
    return response.json()


def _seed_over_http(realm: Realm, side: Side, *, now: datetime, leave_member: int) -> None:
    """The objects a secretary makes through the API, made by the administrator's token."""
    client, admin = realm.client, realm.admin_api
    side.leave_id = _ok(
        client.post(
            f"/api/v1/events/{side.event_id}/leave",
            json={"member_id": leave_member, "reason": "出差"},
            headers=admin,
        )
    )["id"]
    _ok(
        client.post(
            f"/api/v1/events/{side.event_id}/attendance",
            json={"member_id": side.member_id, "reason": "读卡器故障，人工补录"},
            headers=admin,
        )
    )
    side.enrol_session_id = _ok(
        client.post(f"/api/v1/members/{side.member_id}/enrol-sessions", json={}, headers=admin)
    )["id"]
    side.transfer_name = f"转入人{side.name[-4:-3]}"
    side.transfer_id = _ok(
        client.post(
            "/api/v1/transfers",
            json={
                "to_org_id": realm.world.committee_id,
                "claimed_name": side.transfer_name,
                "placement_org_id": side.org_id,
                "letter": {
                    "letter_no": "闽湖组〔2025〕017号",
                    "issuer_name": "中共湖里区某社区委员会",
                    "issuer_kind": "basic_committee",
                    "from_org_name": "湖里第三党支部",
                    "to_org_name": "鹭江街道党工委",
                    "member_category": "full",
                    "dues_paid_to": f"{now.year}-{now.month:02d}",
                    "issued_on": (now.date() - timedelta(days=2)).isoformat(),
                    "valid_days": 30,
                },
            },
            headers=admin,
        )
    )["id"]
    # A tap three hours ago, when no event was open at the venue: an unmatched tap.
    _ok(post_taps(client, side.tap(side.card, at=now - timedelta(hours=3))))
    unmatched = _ok(client.get("/api/v1/taps/unmatched", params={"org": side.org_id}, headers=admin))
    side.unmatched_tap_id = unmatched[0]["tap_id"]


def _seed_reminders(realm: Realm, *, now: datetime) -> None:
    """A stored reminder per side, as the daily sweep would leave it (no API makes reminders)."""
    findings = [
        Finding(
            rule="org_setup.no_secretary",
            family=RuleFamily.ORG_SETUP,
            level=ReminderLevel.WARNING,
            org_id=side.org_id,
            subject=org_subject(side.org_id),
            period="",
            message=f"{side.name}没有在任的支部书记",
        )
        for side in realm.sides()
    ]
    with unit_of_work(realm.engine) as session:
        apply_findings(
            session,
            findings,
            families={RuleFamily.ORG_SETUP},
            now=now,
            escalation=EscalationPolicy(calendar=make_calendar()),
            tz=realm.settings.tz,
        )
        for side in realm.sides():
            side.reminder_id = session.exec(
                select(Reminder.id).where(Reminder.org_id == side.org_id)
            ).scalar_one()


def _build(kind: str, request: pytest.FixtureRequest, directory: Path) -> Iterator[Realm]:
    url, drop = _database(kind, request, directory)
    # No scheduled jobs: their rows would count as writes in the "refused requests write nothing" checks.
    settings = ServerSettings(
        data_dir=directory / "data", database_url=url, secret_key=SecretStr(SECRET), scheduler=False
    )
    keyring = Keyring(SECRET.encode())
    now = utc_now().replace(microsecond=0)
    clock = FakeClock(now)
    engine = make_engine(url)
    try:
        world = build_web_world(engine, keyring, now=now)
        keys_b = KioskKeys()
        with unit_of_work(engine) as session:
            chen = bind_card(
                session,
                keyring=keyring,
                member_id=world.members["陈建国"],
                card_no=CHEN_CARD.card_no,
                uid=CHEN_CARD.uid,
                now=now,
            )
            zhao = bind_card(
                session,
                keyring=keyring,
                member_id=world.members["赵雪梅"],
                card_no=B_CARD.card_no,
                uid=B_CARD.uid,
                now=now,
            )
            venue_b = _venue_of_event(session, world.event_b_id)
            issued = add_kiosk(
                session,
                keyring=keyring,
                name="第二支部一号机",
                venue_id=venue_b,
                now=now,
                code_ttl=timedelta(hours=1),
                caller=CLI_CALLER,
            )
            enroll_kiosk(
                session,
                keyring=keyring,
                request=EnrollRequest(code=issued.code, public_key=keys_b.public_b64, agent_version="test"),
                now=now,
            )

            def token(role: TokenRole, org_id: int | None) -> dict[str, str]:
                created = create_token(
                    session,
                    keyring=keyring,
                    role=role,
                    org_id=org_id,
                    label="security suite",
                    caller=CLI_CALLER,
                    now=now,
                )
                return bearer(created.token)

            admin_api = token(TokenRole.ADMIN, None)
            api_a = token(TokenRole.SECRETARY, world.branch_a_id)
            api_b = token(TokenRole.SECRETARY, world.branch_b_id)
            assert chen.id is not None
            assert zhao.id is not None
            kiosk_b = issued.kiosk.id

        app = create_app(settings, clock=clock)
        with TestClient(app, base_url="http://testserver") as client:
            # More clients of the same app (its lifespan already ran): each keeps its own cookies.
            web_a, web_b, admin_web = (TestClient(app, base_url="http://testserver") for _ in range(3))
            a = Side(
                name="鹭江社区第一党支部",
                org_id=world.branch_a_id,
                member_id=world.members["陈建国"],
                member_name="陈建国",
                event_id=world.event_a_id,
                event_title="主题党日：学习《中国共产党支部工作条例》",
                venue_id=world.venue_a_id,
                kiosk_id=world.kiosk_id,
                keys=world.keys,
                card=CHEN_CARD,
                binding_id=chen.id,
                api=api_a,
                web=web_a,
                csrf=sign_in(web_a, world.accounts["secretary_a"]),
                seq=world.seq,
            )
            b = Side(
                name="鹭江社区第二党支部",
                org_id=world.branch_b_id,
                member_id=world.members["赵雪梅"],
                member_name="赵雪梅",
                event_id=world.event_b_id,
                event_title="第二党支部党员大会",
                venue_id=venue_b,
                kiosk_id=kiosk_b,
                keys=keys_b,
                card=B_CARD,
                binding_id=zhao.id,
                api=api_b,
                web=web_b,
                csrf=sign_in(web_b, world.accounts["secretary_b"]),
            )
            realm = Realm(
                kind=kind,
                settings=settings,
                engine=engine,
                keyring=keyring,
                clock=clock,
                world=world,
                client=client,
                admin_api=admin_api,
                admin_web=admin_web,
                admin_csrf=sign_in(admin_web, world.accounts["admin"]),
                a=a,
                b=b,
            )
            _seed_over_http(realm, a, now=now, leave_member=world.members["周丽华"])
            _seed_over_http(realm, b, now=now, leave_member=world.members["钱志远"])
            _seed_reminders(realm, now=now)
            try:
                yield realm
            finally:
                for extra in (web_a, web_b, admin_web):
                    extra.close()
    finally:
        engine.dispose()
        drop()


def _venue_of_event(session: Any, event_id: int) -> int:
    from server.records.events import Event

    event = session.get(Event, event_id)
    assert event is not None
    venue_id: int = event.venue_id
    return venue_id


@pytest.fixture(scope="module", params=DATABASES)
def realm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Realm]:
    """Shared by the tests of one module: use it only to read, or for changes that must be refused."""
    yield from _build(request.param, request, tmp_path_factory.mktemp(f"realm-{request.param}"))


@pytest.fixture(params=DATABASES)
def fresh_realm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Realm]:
    """A realm of the test's own, free to change."""
    yield from _build(request.param, request, tmp_path)
