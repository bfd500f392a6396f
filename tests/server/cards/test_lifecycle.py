"""Card binding history (#4 item 1): lost (挂失), replaced (补换), revoked — each refused at the
kiosk with its own code, audited, and kept in the member's card history."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from server.audit.service import list_entries
from server.caller import CLI_CALLER, UNSCOPED
from server.cards.lifecycle import card_history, replace_card, report_card_lost, revoke_card
from server.db import unit_of_work
from server.errors import BindingNotActive
from server.keyring import Keyring
from server.records.cards import CardBinding
from server.vocabulary import BindingStatus
from tests.server.factories import EVENT_START, LI_CARD, ZHANG_CARD, ZHAO_CARD, World
from tests.server.ledgers.helpers import CALLER, tap
from tests.server.signing import card

NEW_ZHANG_CARD = card("3104393000000044444", "04FEEDFACE0001")


def binding_of(engine: Engine, member_id: int) -> int:
    with unit_of_work(engine) as session:
        binding = session.exec(
            select(CardBinding).where(
                CardBinding.member_id == member_id, CardBinding.status == BindingStatus.ACTIVE
            )
        ).one()
        assert binding.id is not None
        return binding.id


def test_a_lost_card_is_refused_and_its_replacement_works(
    engine: Engine, keyring: Keyring, world: World
) -> None:
    old = binding_of(engine, world.members["张三明"])
    with unit_of_work(engine) as session:
        report_card_lost(session, binding_id=old, caller=CALLER, now=EVENT_START, reason="本人挂失")
    lost = tap(engine, keyring, world, ZHANG_CARD, EVENT_START)
    assert (lost.status.value, lost.code, lost.display.message) == (
        "rejected",
        "card_lost",
        "此卡已挂失，请联系组织委员",
    )

    with unit_of_work(engine) as session:
        new = replace_card(
            session,
            keyring=keyring,
            binding_id=old,
            card_no=NEW_ZHANG_CARD.card_no,
            uid=NEW_ZHANG_CARD.uid,
            caller=CALLER,
            now=EVENT_START,
        )
        assert new.status == BindingStatus.ACTIVE
    assert tap(engine, keyring, world, NEW_ZHANG_CARD, EVENT_START).display.message == "签到成功"
    assert (
        tap(engine, keyring, world, ZHANG_CARD, EVENT_START).code == "card_lost"
    )  # still lost, not "replaced"

    with unit_of_work(engine) as session:
        history = card_history(session, member_id=world.members["张三明"], caller=CLI_CALLER)
        assert [(b.status, b.card_no_masked) for b in history] == [
            (BindingStatus.ACTIVE, "3104********4444"),
            (BindingStatus.LOST, "3104********8901"),
        ]
        actions = sorted(e.action for e in list_entries(session, scope=UNSCOPED, object_type="card_binding"))
    assert actions == ["card.lost", "card.replace"]


def test_an_active_card_replaced_and_a_revoked_card(engine: Engine, keyring: Keyring, world: World) -> None:
    li = binding_of(engine, world.members["李四"])
    zhao = binding_of(engine, world.members["赵六"])
    with unit_of_work(engine) as session:
        replace_card(
            session,
            keyring=keyring,
            binding_id=li,
            card_no=None,
            uid="08C0FFEE02",
            caller=CALLER,
            now=EVENT_START,
        )
        revoke_card(session, binding_id=zhao, caller=CALLER, now=EVENT_START, reason="撤回授权")
    assert tap(engine, keyring, world, LI_CARD, EVENT_START).code == "card_replaced"
    assert tap(engine, keyring, world, ZHAO_CARD, EVENT_START).code == "card_revoked"
    with pytest.raises(BindingNotActive) as excinfo, unit_of_work(engine) as session:
        report_card_lost(session, binding_id=zhao, caller=CALLER, now=EVENT_START)
    assert excinfo.value.code == "binding_not_active"
