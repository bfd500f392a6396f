"""Leave requests (请假): asked before the event, decided by a secretary, audited, scoped."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from server.audit.service import list_entries
from server.caller import UNSCOPED
from server.db import unit_of_work
from server.errors import DomainError
from server.keyring import Keyring
from server.leave.service import decide_leave, request_leave, withdraw_leave
from server.orgs.membership import add_exemption
from server.vocabulary import EventKind, ExemptionReason, LeaveStatus
from tests.server.factories import World
from tests.server.ledgers.helpers import CALLER, at, meeting, sheet, token


def refusal(engine: Engine, action) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(DomainError) as excinfo, unit_of_work(engine) as session:
        action(session)
    return excinfo.value.code


class TestLeaveService:
    def test_request_approve_reject_withdraw(self, engine: Engine, world: World) -> None:
        event = meeting(engine, world, "四月主题党日", at("2025-04-10"))
        with unit_of_work(engine) as session:
            wang = request_leave(
                session,
                event_id=event,
                member_id=world.members["王五"],
                reason="出差",
                caller=CALLER,
                now=at("2025-04-01"),
            )
            li = request_leave(
                session,
                event_id=event,
                member_id=world.members["李四"],
                reason="私事",
                caller=CALLER,
                now=at("2025-04-01"),
            )
            assert (wang.status, li.status) == (LeaveStatus.PENDING, LeaveStatus.PENDING)
        assert wang.id is not None
        assert li.id is not None

        # A refusal needs a reason; a decided request cannot be decided again.
        assert (
            refusal(
                engine,
                lambda s: decide_leave(
                    s, leave_id=li.id, approve=False, note="", caller=CALLER, now=at("2025-04-02")
                ),
            )
            == "reason_required"
        )
        with unit_of_work(engine) as session:
            decide_leave(
                session, leave_id=wang.id, approve=True, note="", caller=CALLER, now=at("2025-04-02")
            )
            decide_leave(
                session, leave_id=li.id, approve=False, note="非必要事由", caller=CALLER, now=at("2025-04-02")
            )
        assert (
            refusal(
                engine,
                lambda s: decide_leave(
                    s, leave_id=wang.id, approve=False, note="x", caller=CALLER, now=at("2025-04-03")
                ),
            )
            == "leave_not_pending"
        )
        result = sheet(engine, event)
        assert [r.name for r in result.on_leave] == ["王五"]
        assert "李四" in [m.name for m in result.absent]

        with unit_of_work(engine) as session:
            withdraw_leave(session, leave_id=wang.id, caller=CALLER, now=at("2025-04-05"))
        assert sheet(engine, event).on_leave == []
        with unit_of_work(engine) as session:
            actions = [
                e.action for e in reversed(list_entries(session, scope=UNSCOPED, object_type="leave_request"))
            ]
        assert actions == [
            "leave.request",
            "leave.request",
            "leave.approve",
            "leave.reject",
            "leave.withdraw",
        ]

    def test_refusals(self, engine: Engine, world: World) -> None:
        event = meeting(engine, world, "四月主题党日", at("2025-04-10"))
        committee = meeting(engine, world, "支委会", at("2025-04-11"), kinds=[EventKind.COMMITTEE])
        with unit_of_work(engine) as session:
            add_exemption(
                session,
                member_id=world.members["李四"],
                reason=ExemptionReason.MATERNITY,
                starts_at=at("2025-03-01"),
                ends_at=None,
                note="",
                caller=CALLER,
                now=at("2025-03-01"),
            )
            request_leave(
                session,
                event_id=event,
                member_id=world.members["王五"],
                reason="出差",
                caller=CALLER,
                now=at("2025-04-01"),
            )

        def ask(event_id: int, name: str, when: str = "2025-04-01", reason: str = "有事"):  # type: ignore[no-untyped-def]
            return lambda s: request_leave(
                s,
                event_id=event_id,
                member_id=world.members[name],
                reason=reason,
                caller=CALLER,
                now=at(when),
            )

        assert refusal(engine, ask(event, "王五")) == "leave_already_requested"
        assert refusal(engine, ask(event, "张三明", when="2025-04-10")) == "leave_too_late"  # at the start
        assert refusal(engine, ask(event, "赵六")) == "member_not_expected"  # another branch
        assert refusal(engine, ask(event, "李四")) == "member_not_expected"  # exempt anyway
        assert refusal(engine, ask(committee, "张三明")) == "member_not_expected"  # not on the committee
        assert refusal(engine, ask(event, "张三明", reason="  ")) == "reason_required"


class TestLeaveApi:
    def test_a_secretary_asks_and_decides_within_their_branch(
        self, engine: Engine, keyring: Keyring, world: World, client: TestClient
    ) -> None:
        event = meeting(engine, world, "四月主题党日", at("2025-04-10", "09:00"), created=at("2025-02-01"))
        mine = token(engine, keyring, org_id=world.branch_id)
        other = token(engine, keyring, org_id=world.other_branch_id)
        # The app's clock (conftest) stands at 2025-03-01 08:00: before the event.
        body = {"member_id": world.members["王五"], "reason": "外出学习"}
        assert client.post(f"/api/v1/events/{event}/leave", json=body, headers=other).status_code == 404
        created = client.post(f"/api/v1/events/{event}/leave", json=body, headers=mine)
        assert created.status_code == 201, created.text
        leave_id = created.json()["id"]
        assert (
            client.post(f"/api/v1/leave/{leave_id}/decision", json={"approve": True}, headers=other).json()[
                "error"
            ]
            == "leave_request_not_found"
        )
        decided = client.post(f"/api/v1/leave/{leave_id}/decision", json={"approve": True}, headers=mine)
        assert decided.json()["status"] == "approved"
        listed = client.get(f"/api/v1/events/{event}/leave", headers=mine).json()
        assert [(row["member_id"], row["status"]) for row in listed] == [(world.members["王五"], "approved")]
        sheet_json = client.get(f"/api/v1/events/{event}/attendance", headers=mine).json()
        assert [row["name"] for row in sheet_json["on_leave"]] == ["王五"]
