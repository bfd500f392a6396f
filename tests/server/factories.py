"""A small organisation with members, cards, a venue, an event and an enrolled kiosk, built
through the real services."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from schemas.messages import (
    BatchReceipt,
    CardFacts,
    EnrollRequest,
    SignedEnvelope,
    TapBatch,
    TapMode,
    TapPayload,
)
from server.caller import CLI_CALLER
from server.cards.checks import CardCheckPolicy
from server.cards.service import bind_card
from server.db import unit_of_work
from server.events.service import add_event
from server.keyring import Keyring
from server.kiosks.authentication import PublicKeys
from server.kiosks.service import add_kiosk, enroll_kiosk
from server.orgs.service import add_member, add_organisation
from server.records.kiosks import KioskKey
from server.taps.service import Upload, check_ahead, ingest_batch, ingest_uploads
from server.venues.service import add_venue
from server.vocabulary import EventKind, MemberCategory, OrgKind
from tests.server.signing import KioskKeys, card, tap_payload

SHANGHAI = ZoneInfo("Asia/Shanghai")
EVENT_START = datetime(2025, 3, 1, 9, 0, tzinfo=SHANGHAI)
EVENT_END = datetime(2025, 3, 1, 11, 0, tzinfo=SHANGHAI)

# Made-up identifiers in the real formats.
ZHANG_CARD = card("3104393000000018901", "04A1B2C3D4E5F6")  # bound by card number and UID
LI_CARD = card("3104393000000027777", "08C0FFEE")  # bound by UID only
ZHAO_CARD = card("3104393000000035555", "04DEADBEEF0001")  # a member of another branch
STRANGER_CARD = card("3104393000000099999", "04BADC0FFEE000")  # bound to nobody


@dataclass
class World:
    committee_id: int
    branch_id: int
    group_id: int
    other_branch_id: int
    members: dict[str, int]
    venue_id: int
    event_id: int
    kiosk_id: str
    keys: KioskKeys
    spare_code: str  # an unused enrollment code for a second kiosk at the venue
    seq: int = field(default=0)

    def payload(
        self, card_facts: CardFacts, *, at: datetime, seq: int | None = None, mode: TapMode = TapMode.CHECKIN
    ) -> TapPayload:
        """A payload from this world's kiosk; seq defaults to the next one."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        return tap_payload(kiosk_id=self.kiosk_id, seq=seq, at=at, card_facts=card_facts, mode=mode)


def build_world(engine: Engine, keyring: Keyring, *, now: datetime) -> World:
    keys = KioskKeys()
    with unit_of_work(engine) as session:
        committee = add_organisation(
            session, name="思明区某街道党委", kind=OrgKind.BASIC_COMMITTEE, parent_id=None, now=now
        )
        assert committee.id is not None
        branch = add_organisation(
            session, name="第一党支部", kind=OrgKind.BRANCH, parent_id=committee.id, now=now
        )
        assert branch.id is not None
        group = add_organisation(
            session, name="第一党小组", kind=OrgKind.PARTY_GROUP, parent_id=branch.id, now=now
        )
        other = add_organisation(
            session, name="第二党支部", kind=OrgKind.BRANCH, parent_id=committee.id, now=now
        )
        assert group.id is not None
        assert other.id is not None

        def member(name: str, org_id: int, category: MemberCategory = MemberCategory.FULL) -> int:
            created = add_member(
                session, name=name, org_id=org_id, category=category, joined_org_at=None, now=now
            )
            assert created.id is not None
            return created.id

        members = {
            "张三明": member("张三明", branch.id),
            "李四": member("李四", group.id, MemberCategory.PROBATIONARY),
            "王五": member("王五", branch.id),
            "赵六": member("赵六", other.id),
        }
        bind_card(
            session,
            keyring=keyring,
            member_id=members["张三明"],
            card_no=ZHANG_CARD.card_no,
            uid=ZHANG_CARD.uid,
            now=now,
        )
        bind_card(session, keyring=keyring, member_id=members["李四"], card_no=None, uid=LI_CARD.uid, now=now)
        bind_card(
            session, keyring=keyring, member_id=members["赵六"], card_no=ZHAO_CARD.card_no, uid=None, now=now
        )
        venue = add_venue(session, name="党员活动室", org_id=committee.id, now=now)
        assert venue.id is not None
        event = add_event(
            session,
            title="三月主题党日",
            org_id=branch.id,
            venue_id=venue.id,
            kind=EventKind.THEME_DAY,
            start_at=EVENT_START,
            end_at=EVENT_END,
            now=now,
            caller=CLI_CALLER,
        )
        assert event.id is not None
        issued = add_kiosk(
            session,
            keyring=keyring,
            name="一号机",
            venue_id=venue.id,
            now=now,
            code_ttl=timedelta(hours=24),
            caller=CLI_CALLER,
        )
        spare = add_kiosk(
            session,
            keyring=keyring,
            name="二号机",
            venue_id=venue.id,
            now=now,
            code_ttl=timedelta(hours=24),
            caller=CLI_CALLER,
        )
        enroll_kiosk(
            session,
            keyring=keyring,
            request=EnrollRequest(code=issued.code, public_key=keys.public_b64, agent_version="test"),
            now=now,
        )
        return World(
            committee_id=committee.id,
            branch_id=branch.id,
            group_id=group.id,
            other_branch_id=other.id,
            members=members,
            venue_id=venue.id,
            event_id=event.id,
            kiosk_id=issued.kiosk.id,
            keys=keys,
            spare_code=spare.code,
        )


def known_keys(world: World) -> PublicKeys:
    """Public keys as a server process knows them once it has read the world's kiosk key."""
    keys = PublicKeys()
    keys.remember(
        KioskKey(
            kid=world.keys.kid,
            kiosk_id=world.kiosk_id,
            public_key=world.keys.public_b64,
            valid_from=EVENT_START,
        )
    )
    return keys


def enrol_second_kiosk(
    engine: Engine, keyring: Keyring, world: World, *, now: datetime
) -> tuple[str, KioskKeys]:
    """The venue's second kiosk (二号机) enrolled with a fresh key: its id and its keys."""
    keys = KioskKeys()
    with unit_of_work(engine) as session:
        enrolled = enroll_kiosk(
            session,
            keyring=keyring,
            request=EnrollRequest(code=world.spare_code, public_key=keys.public_b64),
            now=now,
        )
    return enrolled.kiosk_id, keys


def upload(
    engine: Engine,
    keyring: Keyring,
    envelopes: Sequence[SignedEnvelope],
    *,
    received_at: datetime,
    public_keys: PublicKeys | None = None,
    card_policy: CardCheckPolicy | None = None,
) -> BatchReceipt:
    """One request's worth of ingest in its own unit of work. With *public_keys*, as the server's
    intake does it: signatures checked ahead with the keys known, the keys found learnt."""
    if public_keys is None:
        with unit_of_work(engine) as session:
            return ingest_batch(
                session,
                TapBatch(envelopes=list(envelopes)),
                keyring=keyring,
                received_at=received_at,
                max_clock_skew=timedelta(minutes=10),
                card_policy=card_policy,
            )
    checked = check_ahead(Upload(envelopes=list(envelopes)), public_keys)
    with unit_of_work(engine) as session:
        (receipt,) = ingest_uploads(
            session,
            [checked],
            keyring=keyring,
            received_at=received_at,
            max_clock_skew=timedelta(minutes=10),
            card_policy=card_policy,
            public_keys=public_keys,
        )
    return receipt
