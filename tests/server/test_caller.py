"""One caller type: a token authenticates to a Caller with its scope resolved, and the services
that schedule events and bind cards check that scope and write their own audit entries."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from server.audit.service import list_entries
from server.auth.service import authenticate_token, create_token
from server.caller import CLI_CALLER, UNSCOPED, Actor, Caller
from server.cards.service import bind_member_card
from server.db import unit_of_work
from server.errors import DomainError
from server.events.service import add_event, update_event_details
from server.keyring import Keyring
from server.records.audit import AuditEntry
from server.vocabulary import EventKind, TokenRole, UserRole
from tests.server.conftest import FakeClock
from tests.server.factories import EVENT_END, EVENT_START, ZHANG_CARD, World


def token_caller(engine: Engine, keyring: Keyring, *, role: TokenRole, org_id: int | None) -> Caller:
    with unit_of_work(engine) as session:
        token = create_token(
            session,
            keyring=keyring,
            role=role,
            org_id=org_id,
            label="test",
            caller=CLI_CALLER,
            now=EVENT_START,
        )
    with Session(engine) as session:
        return authenticate_token(session, keyring=keyring, token=token.token)


def entries(engine: Engine, object_type: str) -> list[AuditEntry]:
    with Session(engine) as session:
        return list(reversed(list_entries(session, scope=UNSCOPED, object_type=object_type)))


class TestTokenCaller:
    def test_a_secretary_token_sees_its_subtree_resolved_once(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        caller = token_caller(engine, keyring, role=TokenRole.SECRETARY, org_id=world.branch_id)
        token_id = caller.actor.ref.removeprefix("token:")
        assert caller.actor == Actor(f"token:{token_id}", f"API令牌 {token_id}")
        assert caller.role == UserRole.SECRETARY
        assert caller.org_id == world.branch_id
        assert caller.scope.org_ids == frozenset({world.branch_id, world.group_id})
        assert caller.sees_org(world.group_id)
        assert not caller.sees_org(world.other_branch_id)
        assert not caller.sees_org(None)

    def test_an_admin_token_without_an_organisation_sees_everything(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        caller = token_caller(engine, keyring, role=TokenRole.ADMIN, org_id=None)
        assert caller.role == UserRole.ADMIN
        assert caller.scope == UNSCOPED
        assert caller.sees_org(world.other_branch_id)


class TestEventsAudit:
    def test_scheduling_and_editing_are_audited_in_the_callers_name(
        self, engine: Engine, keyring: Keyring, world: World, clock: FakeClock
    ) -> None:
        caller = token_caller(engine, keyring, role=TokenRole.SECRETARY, org_id=world.branch_id)
        start = EVENT_START + timedelta(days=7)
        with unit_of_work(engine) as session:
            event = add_event(
                session,
                title="四月主题党日",
                org_id=world.branch_id,
                venue_id=world.venue_id,  # the committee's hall: a branch may meet above itself
                kind=EventKind.THEME_DAY,
                start_at=start,
                end_at=start + (EVENT_END - EVENT_START),
                now=clock.now,
                caller=caller,
            )
            event_id = event.id
            assert event_id is not None
        with unit_of_work(engine) as session:
            update_event_details(
                session, event_id=event_id, title="四月主题党日（改期）", now=clock.now, caller=caller
            )
        created, updated = [e for e in entries(engine, "event") if e.object_id == str(event_id)]
        assert (created.action, created.actor, created.actor_name) == (
            "event.create",
            caller.actor.ref,
            caller.actor.name,
        )
        assert created.org_id == world.branch_id
        assert json.loads(created.detail) == {"title": "四月主题党日", "kind": "theme_day"}
        assert (updated.action, updated.actor) == ("event.update", caller.actor.ref)
        assert json.loads(updated.detail) == {"title": "四月主题党日（改期）"}

    def test_outside_the_scope_nothing_is_scheduled_or_edited(
        self, engine: Engine, keyring: Keyring, world: World, clock: FakeClock
    ) -> None:
        other = token_caller(engine, keyring, role=TokenRole.SECRETARY, org_id=world.other_branch_id)
        before = len(entries(engine, "event"))
        with pytest.raises(DomainError) as refused, unit_of_work(engine) as session:
            add_event(
                session,
                title="越权活动",
                org_id=world.branch_id,
                venue_id=world.venue_id,
                kind=EventKind.OTHER,
                start_at=EVENT_START,
                end_at=EVENT_END,
                now=clock.now,
                caller=other,
            )
        assert refused.value.code == "organisation_not_found"
        with pytest.raises(DomainError) as hidden, unit_of_work(engine) as session:
            update_event_details(session, event_id=world.event_id, title="改名", now=clock.now, caller=other)
        assert hidden.value.code == "event_not_found"
        assert len(entries(engine, "event")) == before


class TestCardBindingAudit:
    def test_binding_is_audited_in_the_callers_name(
        self, engine: Engine, keyring: Keyring, world: World, clock: FakeClock
    ) -> None:
        caller = token_caller(engine, keyring, role=TokenRole.SECRETARY, org_id=world.branch_id)
        with unit_of_work(engine) as session:
            binding = bind_member_card(
                session,
                keyring=keyring,
                member_id=world.members["王五"],
                card_no="3104393000000061234",
                uid=None,
                now=clock.now,
                caller=caller,
            )
            binding_id = binding.id
        (entry,) = [e for e in entries(engine, "card_binding") if e.action == "card.bind"]
        assert (entry.actor, entry.object_id, entry.org_id) == (
            caller.actor.ref,
            str(binding_id),
            world.branch_id,
        )
        assert json.loads(entry.detail) == {"member_id": world.members["王五"], "card": "3104********1234"}

    def test_a_member_outside_the_scope_does_not_exist(
        self, engine: Engine, keyring: Keyring, world: World, clock: FakeClock
    ) -> None:
        caller = token_caller(engine, keyring, role=TokenRole.SECRETARY, org_id=world.branch_id)
        with pytest.raises(DomainError) as refused, unit_of_work(engine) as session:
            bind_member_card(
                session,
                keyring=keyring,
                member_id=world.members["赵六"],  # of the other branch
                card_no=None,
                uid=ZHANG_CARD.uid,
                now=clock.now,
                caller=caller,
            )
        assert refused.value.code == "member_not_found"
        assert [e for e in entries(engine, "card_binding") if e.action == "card.bind"] == []
