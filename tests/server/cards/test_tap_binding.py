"""刷卡绑定: a secretary waits for a member's card; the next enrol-mode tap at a kiosk of that
organisation binds it. Through the real ingest pipeline and the JSON API."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, func, select

from schemas.messages import BatchReceipt, CardFacts, EnrollRequest, SignedEnvelope, TapMode
from server.caller import CLI_CALLER, UNSCOPED, Actor, Caller
from server.cards.schemas import EnrolSessionPublic
from server.cards.tap_binding import read_enrol_session, start_enrol_session
from server.db import unit_of_work
from server.keyring import Keyring
from server.kiosks.service import add_kiosk, enroll_kiosk
from server.records.attendance import Attendance
from server.records.audit import AuditEntry
from server.records.cards import CardBinding
from server.records.kiosks import EnrolSessionState
from server.records.taps import Tap
from server.venues.service import add_venue
from server.vocabulary import TokenRole, UserRole
from tests.server.conftest import FakeClock
from tests.server.factories import EVENT_START, ZHANG_CARD, World, upload
from tests.server.kiosks.messages import bearer
from tests.server.signing import KioskKeys, card

NEW_CARD = card("3104393000000046666", "04AB12CD34EF56")
SECRETARY = Caller(
    actor=Actor("user:7", "王书记"), role=UserRole.ADMIN, org_id=None, scope=UNSCOPED, may_approve=True
)
TTL = timedelta(minutes=5)


def start(
    engine: Engine, world: World, name: str, at: datetime, *, kiosk_id: str | None = None
) -> EnrolSessionPublic:
    with unit_of_work(engine) as session:
        return start_enrol_session(
            session,
            member_id=world.members[name],
            kiosk_id=kiosk_id,
            caller=SECRETARY,
            now=at,
            ttl=TTL,
        )


def enrol_tap(
    engine: Engine, keyring: Keyring, world: World, card_facts: CardFacts, *, at: datetime
) -> BatchReceipt:
    envelope = world.keys.seal(world.payload(card_facts, at=at, mode=TapMode.ENROL))
    return upload(engine, keyring, [envelope], received_at=at)


def state_of(engine: Engine, enrol_id: int, at: datetime) -> EnrolSessionPublic:
    with Session(engine) as session:
        return read_enrol_session(session, enrol_session_id=enrol_id, now=at, caller=SECRETARY)


class TestBindByTap:
    def test_tap_binds_the_card_and_later_checks_the_member_in(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """王五 has no card; an enrol tap binds one ('已绑定到 王*'); his next check-in tap counts."""
        at = EVENT_START
        waiting = start(engine, world, "王五", at - timedelta(minutes=1))
        receipt = enrol_tap(engine, keyring, world, NEW_CARD, at=at).receipts[0]

        assert (receipt.status.value, receipt.code) == ("accepted", None)
        assert receipt.display.member_name == "王*"
        assert receipt.display.message == "已绑定到 王*"
        bound = state_of(engine, waiting.id, at)
        assert bound.state == EnrolSessionState.BOUND
        assert bound.card_masked == "3104********6666"
        with Session(engine) as session:
            assert session.exec(select(func.count()).select_from(Attendance)).one() == 0
            tap = session.exec(select(Tap)).one()
            assert (tap.mode, tap.member_id, tap.event_id) == (TapMode.ENROL, None, None)
            audit = session.exec(select(AuditEntry).where(AuditEntry.action == "card.bind")).one()
            assert (audit.actor, audit.object_id, audit.reason) == (
                "user:7",
                str(world.members["王五"]),
                "刷卡绑定",
            )
            assert "04AB12CD34EF56" not in audit.detail
            assert "3104393000000046666" not in audit.detail

        checkin = world.keys.seal(world.payload(NEW_CARD, at=at + timedelta(minutes=1)))
        later = upload(engine, keyring, [checkin], received_at=at + timedelta(minutes=1)).receipts[0]
        assert (later.status.value, later.display.member_name) == ("accepted", "王*")

    def test_nobody_waiting(self, engine: Engine, keyring: Keyring, world: World) -> None:
        """An enrol tap without a waiting request is refused and binds nothing."""
        receipt = enrol_tap(engine, keyring, world, NEW_CARD, at=EVENT_START).receipts[0]
        assert (receipt.status.value, receipt.code) == ("rejected", "no_enrol_session")
        assert receipt.display.message == "没有待绑定的请求，请先在网页上点击「刷卡绑定」"
        with Session(engine) as session:
            assert session.exec(select(func.count()).select_from(CardBinding)).one() == 3

    def test_request_expires(self, engine: Engine, keyring: Keyring, world: World) -> None:
        """Five minutes after the request a tap no longer binds; the request reads 'expired'."""
        waiting = start(engine, world, "王五", EVENT_START)
        late = EVENT_START + TTL + timedelta(seconds=1)
        assert enrol_tap(engine, keyring, world, NEW_CARD, at=late).receipts[0].code == "no_enrol_session"
        assert state_of(engine, waiting.id, late).state == EnrolSessionState.EXPIRED

    def test_tap_made_before_the_request_does_not_bind(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """A tap stored offline an hour ago, uploaded now, is not the card the secretary waits for."""
        start(engine, world, "王五", EVENT_START)
        envelope = world.keys.seal(
            world.payload(NEW_CARD, at=EVENT_START - timedelta(hours=1), mode=TapMode.ENROL)
        )
        receipt = upload(
            engine, keyring, [envelope], received_at=EVENT_START + timedelta(seconds=5)
        ).receipts[0]
        assert receipt.code == "no_enrol_session"

    def test_card_of_another_member(self, engine: Engine, keyring: Keyring, world: World) -> None:
        """张三明's card tapped for 王五: refused, and the waiting page learns why."""
        waiting = start(engine, world, "王五", EVENT_START)
        receipt = enrol_tap(engine, keyring, world, ZHANG_CARD, at=EVENT_START).receipts[0]
        assert (receipt.code, receipt.display.message) == ("card_already_bound", "该卡已绑定到其他党员")
        still = state_of(engine, waiting.id, EVENT_START)
        assert still.state == EnrolSessionState.PENDING
        assert (still.last_problem, still.last_problem_message) == (
            "card_already_bound",
            "刚才刷的卡已绑定到其他党员",
        )

    def test_two_requests_waiting_is_ambiguous_unless_one_is_pinned(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """Two secretaries waiting at once: the tap cannot know whose card it is; pinning decides."""
        start(engine, world, "王五", EVENT_START)
        start(engine, world, "赵六", EVENT_START)
        assert (
            enrol_tap(engine, keyring, world, NEW_CARD, at=EVENT_START).receipts[0].code == "enrol_ambiguous"
        )

        pinned = start(engine, world, "王五", EVENT_START, kiosk_id=world.kiosk_id)
        receipt = enrol_tap(engine, keyring, world, NEW_CARD, at=EVENT_START + timedelta(seconds=1)).receipts[
            0
        ]
        assert receipt.display.message == "已绑定到 王*"
        assert state_of(engine, pinned.id, EVENT_START).state == EnrolSessionState.BOUND

    def test_kiosk_outside_the_members_organisation(
        self, engine: Engine, keyring: Keyring, world: World, clock: FakeClock
    ) -> None:
        """A kiosk at the second branch's own venue does not serve a first-branch member's request."""
        other_keys = KioskKeys()
        with unit_of_work(engine) as session:
            venue = add_venue(session, name="第二支部活动室", org_id=world.other_branch_id, now=clock.now)
            assert venue.id is not None
            issued = add_kiosk(
                session,
                keyring=keyring,
                name="二支部机",
                venue_id=venue.id,
                now=clock.now,
                code_ttl=timedelta(hours=1),
                caller=CLI_CALLER,
            )
            enroll_kiosk(
                session,
                keyring=keyring,
                request=EnrollRequest(code=issued.code, public_key=other_keys.public_b64),
                now=clock.now,
            )
        start(engine, world, "王五", EVENT_START)
        payload = world.payload(NEW_CARD, at=EVENT_START, mode=TapMode.ENROL).model_copy(
            update={"kiosk_id": issued.kiosk.id}
        )
        envelope: SignedEnvelope = other_keys.seal(payload)
        assert (
            upload(engine, keyring, [envelope], received_at=EVENT_START).receipts[0].code
            == "no_enrol_session"
        )


class TestEnrolApi:
    def test_secretary_starts_polls_and_sees_the_binding(
        self, client: TestClient, engine: Engine, keyring: Keyring, world: World, clock: FakeClock
    ) -> None:
        """POST starts waiting, GET polls; after the tap GET shows the masked card; cancel is then 409."""
        headers = bearer(engine, keyring, role=TokenRole.SECRETARY, org_id=world.branch_id, now=clock.now)
        created = client.post(
            f"/api/v1/members/{world.members['王五']}/enrol-sessions", json={}, headers=headers
        )
        assert created.status_code == 200, created.text
        enrol_id = created.json()["id"]
        assert created.json()["state"] == "pending"
        assert created.json()["expires_at"] == (clock.now + TTL).isoformat()

        clock.advance(seconds=20)
        enrol_tap(engine, keyring, world, NEW_CARD, at=clock.now)
        polled = client.get(f"/api/v1/enrol-sessions/{enrol_id}", headers=headers).json()
        assert (polled["state"], polled["card_masked"]) == ("bound", "3104********6666")
        cancel = client.post(f"/api/v1/enrol-sessions/{enrol_id}/cancel", headers=headers)
        assert (cancel.status_code, cancel.json()["error"]) == (409, "enrol_session_closed")
        with Session(engine) as session:
            actors = session.exec(
                select(AuditEntry.actor).where(
                    col(AuditEntry.action).in_(["enrol_session.start", "card.bind"])
                )
            ).all()
        assert len(actors) == 2
        assert all(actor.startswith("token:") for actor in actors)

    def test_cancel_stops_the_wait(
        self, client: TestClient, engine: Engine, keyring: Keyring, world: World, clock: FakeClock
    ) -> None:
        headers = bearer(engine, keyring, role=TokenRole.SECRETARY, org_id=world.branch_id, now=clock.now)
        enrol_id = client.post(
            f"/api/v1/members/{world.members['王五']}/enrol-sessions", json={}, headers=headers
        ).json()["id"]
        assert (
            client.post(f"/api/v1/enrol-sessions/{enrol_id}/cancel", headers=headers).json()["state"]
            == "cancelled"
        )
        assert (
            enrol_tap(engine, keyring, world, NEW_CARD, at=clock.now).receipts[0].code == "no_enrol_session"
        )

    def test_other_branches_are_invisible(
        self, client: TestClient, engine: Engine, keyring: Keyring, world: World, clock: FakeClock
    ) -> None:
        """A second-branch secretary can neither start nor read a first-branch member's request."""
        mine = bearer(engine, keyring, role=TokenRole.SECRETARY, org_id=world.branch_id, now=clock.now)
        theirs = bearer(
            engine, keyring, role=TokenRole.SECRETARY, org_id=world.other_branch_id, now=clock.now
        )
        url = f"/api/v1/members/{world.members['王五']}/enrol-sessions"
        refused = client.post(url, json={}, headers=theirs)
        assert (refused.status_code, refused.json()["error"]) == (404, "member_not_found")
        enrol_id = client.post(url, json={}, headers=mine).json()["id"]
        assert client.get(f"/api/v1/enrol-sessions/{enrol_id}", headers=theirs).status_code == 404
