"""What the 请假 pages list: pending and decided requests in the caller's scope, and whom leave can
be recorded for."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from server.caller import Actor, Caller, Scope
from server.db import unit_of_work
from server.errors import EventNotFound, LeaveRequestNotFound
from server.leave.service import (
    decide_leave,
    leave_requests_in_scope,
    members_who_may_ask,
    request_leave,
    require_visible_leave,
)
from server.vocabulary import UserRole
from tests.server.factories import World
from tests.server.ledgers.helpers import CALLER, at, meeting


def secretary_of(org_id: int) -> Caller:
    return Caller(
        actor=Actor("user:90", "书记"),
        role=UserRole.SECRETARY,
        org_id=org_id,
        scope=Scope(frozenset({org_id})),
        may_approve=False,
    )


def test_listing_and_choices_follow_scope_status_and_time(engine: Engine, world: World) -> None:
    event = meeting(engine, world, "四月主题党日", at("2025-04-10"))
    before = at("2025-04-01")
    with unit_of_work(engine) as session:
        leave = request_leave(
            session, event_id=event, member_id=world.members["王五"], reason="出差", caller=CALLER, now=before
        )
        assert leave.id is not None
        leave_id = leave.id

    own = secretary_of(world.branch_id)
    other = secretary_of(world.other_branch_id)
    with unit_of_work(engine) as session:
        # Invited (the branch with its 党小组), not yet asked; 赵六 is of another branch.
        may_ask = members_who_may_ask(session, event_id=event, caller=CALLER, now=before)
        assert [m.name for m in may_ask] == ["张三明", "李四"]
        assert members_who_may_ask(session, event_id=event, caller=CALLER, now=at("2025-04-10")) == []

        [pending] = leave_requests_in_scope(session, caller=own, pending=True)
        assert (pending.leave.id, pending.member_name, pending.org_name) == (leave_id, "王五", "第一党支部")
        assert pending.event.title == "四月主题党日"
        assert leave_requests_in_scope(session, caller=own, pending=False) == []

        assert leave_requests_in_scope(session, caller=other, pending=True) == []
        with pytest.raises(LeaveRequestNotFound):
            require_visible_leave(session, leave_id, caller=other)
        with pytest.raises(EventNotFound):
            members_who_may_ask(session, event_id=event, caller=other, now=before)

    with unit_of_work(engine) as session:
        decide_leave(session, leave_id=leave_id, approve=True, note="", caller=own, now=before)
    with unit_of_work(engine) as session:
        assert leave_requests_in_scope(session, caller=own, pending=True) == []
        [decided] = leave_requests_in_scope(session, caller=own, pending=False)
        assert decided.leave.id == leave_id
        assert require_visible_leave(session, leave_id, caller=own).member_name == "王五"
