"""The sign-in sheet: ``GET /api/v1/events/{id}/attendance`` (auth, org scoping) and its content."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from schemas.messages import TapBatch
from server.attendance.schemas import AttendanceSheet
from server.attendance.service import build_attendance_sheet
from server.auth.service import create_token
from server.caller import CLI_CALLER
from server.db import unit_of_work
from server.errors import OrgRequired
from server.keyring import Keyring
from server.orgs.service import add_member
from server.vocabulary import MemberCategory, TokenRole
from tests.server.conftest import FakeClock
from tests.server.factories import EVENT_START, LI_CARD, SHANGHAI, ZHANG_CARD, ZHAO_CARD, World, upload


def token_for(
    engine: Engine, keyring: Keyring, *, role: TokenRole = TokenRole.ADMIN, org_id: int | None = None
) -> str:
    with unit_of_work(engine) as session:
        return create_token(
            session,
            keyring=keyring,
            role=role,
            org_id=org_id,
            label="test",
            caller=CLI_CALLER,
            now=EVENT_START,
        ).token


def sheet_url(event_id: int) -> str:
    return f"/api/v1/events/{event_id}/attendance"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class TestSheetContent:
    def test_present_absent_and_guests(self, engine: Engine, keyring: Keyring, world: World) -> None:
        """Expected = the branch and its group; present with first tap; absent; guests apart."""
        first, again = EVENT_START - timedelta(minutes=5), EVENT_START + timedelta(minutes=50)
        upload(
            engine,
            keyring,
            [
                world.keys.seal(world.payload(ZHANG_CARD, at=first)),
                world.keys.seal(world.payload(LI_CARD, at=EVENT_START)),
                world.keys.seal(world.payload(ZHANG_CARD, at=again)),
                world.keys.seal(world.payload(ZHAO_CARD, at=EVENT_START)),
            ],
            received_at=again + timedelta(minutes=1),
        )
        with unit_of_work(engine) as session:
            sheet = build_attendance_sheet(session, event_id=world.event_id, caller=CLI_CALLER, tz=SHANGHAI)

        assert sheet.event.title == "三月主题党日"
        assert sheet.event.checkin_opens_at == EVENT_START - timedelta(minutes=30)
        assert sorted(m.name for m in sheet.expected) == ["张三明", "李四", "王五"]
        assert [(p.name, p.first_tap_at, p.last_tap_at, p.tap_count, p.expected) for p in sheet.present] == [
            ("张三明", first, again, 2, True),
            ("李四", EVENT_START, EVENT_START, 1, True),
            ("赵六", EVENT_START, EVENT_START, 1, False),
        ]
        assert [m.name for m in sheet.absent] == ["王五"]
        counted = {"expected", "present", "absent", "present_full", "present_probationary", "guests"}
        assert sheet.counts.model_dump(include=counted) == {
            "expected": 3,
            "present": 2,
            "absent": 1,
            "present_full": 1,
            "present_probationary": 1,
            "guests": 1,
        }
        assert sheet.present[0].first_tap_at.utcoffset() == timedelta(hours=8)

    def test_members_who_joined_after_the_start_are_not_expected(self, engine: Engine, world: World) -> None:
        """Someone who joined the branch after the meeting was not expected at it."""
        with unit_of_work(engine) as session:
            add_member(
                session,
                name="新成员",
                org_id=world.branch_id,
                category=MemberCategory.PROBATIONARY,
                joined_org_at=EVENT_START + timedelta(days=3),
                now=EVENT_START + timedelta(days=3),
            )
        with unit_of_work(engine) as session:
            sheet = build_attendance_sheet(session, event_id=world.event_id, caller=CLI_CALLER, tz=SHANGHAI)
        assert "新成员" not in {m.name for m in sheet.expected}


class TestSheetRoute:
    def test_admin_token_reads_the_sheet(
        self, client: TestClient, engine: Engine, keyring: Keyring, world: World, clock: FakeClock
    ) -> None:
        """Taps posted over HTTP show up in the sheet read over HTTP."""
        clock.now = EVENT_START + timedelta(minutes=1)
        batch = TapBatch(envelopes=[world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START))])
        assert client.post("/api/v1/taps", json=batch.model_dump(mode="json")).status_code == 200

        response = client.get(sheet_url(world.event_id), headers=bearer(token_for(engine, keyring)))
        assert response.status_code == 200, response.text
        sheet = AttendanceSheet.model_validate(response.json())
        assert [p.name for p in sheet.present] == ["张三明"]
        assert sheet.counts.absent == 2

    def test_without_a_token(self, client: TestClient, world: World) -> None:
        """No token: 401 not_authenticated, with a Bearer challenge."""
        response = client.get(sheet_url(world.event_id))
        assert response.status_code == 401
        assert response.json()["error"] == "not_authenticated"
        assert response.headers["WWW-Authenticate"] == "Bearer"

    def test_with_a_wrong_token(self, client: TestClient, world: World) -> None:
        """A token the server never issued: 401 invalid_token."""
        response = client.get(sheet_url(world.event_id), headers=bearer("ecard_not-a-real-token"))
        assert response.status_code == 401
        assert response.json() == {"error": "invalid_token", "detail": "令牌无效或已撤销"}

    @pytest.mark.parametrize("scope", ["committee", "branch"])
    def test_token_scoped_above_or_at_the_event_org(
        self, client: TestClient, engine: Engine, keyring: Keyring, world: World, scope: str
    ) -> None:
        """A token of the event's organisation or an ancestor sees the sheet."""
        org_id = world.committee_id if scope == "committee" else world.branch_id
        token = token_for(engine, keyring, role=TokenRole.SECRETARY, org_id=org_id)
        assert client.get(sheet_url(world.event_id), headers=bearer(token)).status_code == 200

    def test_token_of_another_branch_sees_nothing(
        self, client: TestClient, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """Outside the token's subtree the event looks absent (404), so ids leak nothing."""
        token = token_for(engine, keyring, role=TokenRole.SECRETARY, org_id=world.other_branch_id)
        response = client.get(sheet_url(world.event_id), headers=bearer(token))
        assert response.status_code == 404
        assert response.json()["error"] == "event_not_found"

    def test_token_scoped_below_the_event_org_sees_nothing(
        self, client: TestClient, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """A party-group token does not see its parent branch's events."""
        token = token_for(engine, keyring, role=TokenRole.SECRETARY, org_id=world.group_id)
        assert client.get(sheet_url(world.event_id), headers=bearer(token)).status_code == 404

    def test_unknown_event(self, client: TestClient, engine: Engine, keyring: Keyring, world: World) -> None:
        """An event id that does not exist: 404 event_not_found."""
        response = client.get(sheet_url(world.event_id + 100), headers=bearer(token_for(engine, keyring)))
        assert response.status_code == 404
        assert response.json()["error"] == "event_not_found"


class TestTokens:
    def test_secretary_token_needs_an_organisation(self, engine: Engine, keyring: Keyring) -> None:
        """Secretary tokens are always scoped."""
        with unit_of_work(engine) as session, pytest.raises(OrgRequired) as excinfo:
            create_token(
                session,
                keyring=keyring,
                role=TokenRole.SECRETARY,
                org_id=None,
                label="",
                caller=CLI_CALLER,
                now=EVENT_START,
            )
        assert excinfo.value.code == "org_required"
