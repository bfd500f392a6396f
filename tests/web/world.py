"""A small party organisation for the browser tests, built through the real services.

Two branches under one 基层党委, each with a secretary; an organiser of the committee and a
system administrator; members with cards; a venue per branch; an event per branch whose
check-in window is open *now* (the live-board test taps into branch A's); an enrolled kiosk at
branch A's venue with its Ed25519 key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine

from schemas.messages import CardFacts, EnrollRequest, SignedEnvelope, TapBatch, TapMode
from server.caller import CLI_CALLER
from server.cards.service import bind_card
from server.db import unit_of_work
from server.events.service import add_event
from server.keyring import Keyring
from server.kiosks.service import add_kiosk, enroll_kiosk
from server.orgs.service import add_member, add_organisation
from server.users.service import add_user
from server.venues.service import add_venue
from server.vocabulary import EventKind, MemberCategory, OrgKind, UserRole
from tests.server.signing import KioskKeys, card, tap_payload


@dataclass(frozen=True)
class WebAccount:
    username: str
    password: str
    display_name: str


# Made-up identifiers in the real formats.
CHEN_CARD = card("3104393000000011111", "04C4E2000001")
ZHOU_CARD = card("3104393000000022222", "04C4E2000002")
HUANG_CARD = card("3104393000000033333", "04C4E2000003")

BRANCH_A_MEMBERS = [
    ("陈建国", MemberCategory.FULL),
    ("周丽华", MemberCategory.FULL),
    ("黄志强", MemberCategory.FULL),
    ("林晓燕", MemberCategory.PROBATIONARY),
    ("吴海峰", MemberCategory.FULL),
    ("郑秀英", MemberCategory.FULL),
    ("欧阳明娜", MemberCategory.FULL),
    ("许文博", MemberCategory.PROBATIONARY),
]
BRANCH_B_MEMBERS = [
    ("赵雪梅", MemberCategory.FULL),
    ("钱志远", MemberCategory.FULL),
    ("孙丽", MemberCategory.PROBATIONARY),
]


@dataclass
class WebWorld:
    committee_id: int
    branch_a_id: int
    branch_b_id: int
    members: dict[str, int]
    event_a_id: int
    event_b_id: int
    venue_a_id: int
    kiosk_id: str
    keys: KioskKeys
    accounts: dict[str, WebAccount]
    seq: int = field(default=0)

    def tap_batch(self, card_facts: CardFacts, *, at: datetime, mode: TapMode = TapMode.CHECKIN) -> TapBatch:
        """A signed one-tap batch from the world's kiosk, as ``POST /api/v1/taps`` expects it."""
        self.seq += 1
        payload = tap_payload(kiosk_id=self.kiosk_id, seq=self.seq, at=at, card_facts=card_facts, mode=mode)
        envelope: SignedEnvelope = self.keys.seal(payload)
        return TapBatch(envelopes=[envelope])


def build_web_world(engine: Engine, keyring: Keyring, *, now: datetime) -> WebWorld:
    keys = KioskKeys()
    # The organisations, members and cards have existed for a while, so ledgers have a history.
    founded = now - timedelta(days=400)
    with unit_of_work(engine) as session:

        def org(name: str, kind: OrgKind, parent: int | None) -> int:
            created = add_organisation(session, name=name, kind=kind, parent_id=parent, now=founded)
            assert created.id is not None
            return created.id

        committee = org("思明区鹭江街道党工委", OrgKind.BASIC_COMMITTEE, None)
        branch_a = org("鹭江社区第一党支部", OrgKind.BRANCH, committee)
        branch_b = org("鹭江社区第二党支部", OrgKind.BRANCH, committee)

        members: dict[str, int] = {}
        for branch, roster in ((branch_a, BRANCH_A_MEMBERS), (branch_b, BRANCH_B_MEMBERS)):
            for name, category in roster:
                member = add_member(
                    session, name=name, org_id=branch, category=category, joined_org_at=None, now=founded
                )
                assert member.id is not None
                members[name] = member.id
        for name, tapped in (("陈建国", CHEN_CARD), ("周丽华", ZHOU_CARD), ("黄志强", HUANG_CARD)):
            bind_card(
                session,
                keyring=keyring,
                member_id=members[name],
                card_no=tapped.card_no,
                uid=tapped.uid,
                now=founded,
            )

        venue_a = add_venue(session, name="鹭江社区党群服务中心", org_id=branch_a, now=founded)
        venue_b = add_venue(session, name="第二党支部活动室", org_id=branch_b, now=founded)
        assert venue_a.id is not None
        assert venue_b.id is not None
        start = now + timedelta(minutes=10)
        event_a = add_event(
            session,
            title="主题党日：学习《中国共产党支部工作条例》",
            org_id=branch_a,
            venue_id=venue_a.id,
            kind=EventKind.THEME_DAY,
            start_at=start,
            end_at=start + timedelta(hours=2),
            checkin_opens_at=now - timedelta(minutes=30),
            now=now,
            caller=CLI_CALLER,
        )
        event_b = add_event(
            session,
            title="第二党支部党员大会",
            org_id=branch_b,
            venue_id=venue_b.id,
            kind=EventKind.BRANCH_GENERAL,
            start_at=start,
            end_at=start + timedelta(hours=2),
            now=now,
            caller=CLI_CALLER,
        )
        assert event_a.id is not None
        assert event_b.id is not None

        issued = add_kiosk(
            session,
            keyring=keyring,
            name="服务中心一号机",
            venue_id=venue_a.id,
            now=now,
            code_ttl=timedelta(hours=1),
            caller=CLI_CALLER,
        )
        enroll_kiosk(
            session,
            keyring=keyring,
            request=EnrollRequest(code=issued.code, public_key=keys.public_b64, agent_version="test"),
            now=now,
        )

        accounts = {
            "secretary_a": WebAccount("chenshuji", "ludong-branch-1-pass", "陈书记"),
            "secretary_b": WebAccount("zhaoshuji", "ludong-branch-2-pass", "赵书记"),
            "organiser": WebAccount("zuzhiyuan", "committee-organiser-pass", "刘组织员"),
            "admin": WebAccount("admin", "system-admin-pass-0", "系统管理员"),
        }
        scopes = {
            "secretary_a": (UserRole.SECRETARY, branch_a),
            "secretary_b": (UserRole.SECRETARY, branch_b),
            "organiser": (UserRole.ORGANISER, committee),
            "admin": (UserRole.ADMIN, None),
        }
        for key, account in accounts.items():
            role, org_id = scopes[key]
            add_user(
                session,
                username=account.username,
                display_name=account.display_name,
                password=account.password,
                role=role,
                org_id=org_id,
                now=now,
                caller=CLI_CALLER,
            )

        return WebWorld(
            committee_id=committee,
            branch_a_id=branch_a,
            branch_b_id=branch_b,
            members=members,
            event_a_id=event_a.id,
            event_b_id=event_b.id,
            venue_a_id=venue_a.id,
            kiosk_id=issued.kiosk.id,
            keys=keys,
            accounts=accounts,
        )


PAST_MEETINGS = [
    # (days ago, title, kind, who tapped and how many minutes after the start)
    (12, "十一月支部委员会", EventKind.COMMITTEE, [(CHEN_CARD, -5), (ZHOU_CARD, -2)]),
    (
        40,
        "十月主题党日：重温入党誓词",
        EventKind.THEME_DAY,
        [(CHEN_CARD, -10), (ZHOU_CARD, -3), (HUANG_CARD, 12)],
    ),
    (75, "第三季度支部党员大会", EventKind.BRANCH_GENERAL, [(CHEN_CARD, -8), (HUANG_CARD, -1)]),
    (100, "党课：学习贯彻党的二十届三中全会精神", EventKind.LECTURE, [(ZHOU_CARD, -6), (HUANG_CARD, 2)]),
]


def add_past_meetings(engine: Engine, world: WebWorld, *, now: datetime) -> list[tuple[CardFacts, datetime]]:
    """Earlier meetings of branch A at its venue; returns the taps to upload (as a kiosk would
    after the fact), so ledgers and dashboards have a history to show."""
    taps: list[tuple[CardFacts, datetime]] = []
    with unit_of_work(engine) as session:
        for days_ago, title, kind, tapped in PAST_MEETINGS:
            start = (now - timedelta(days=days_ago)).replace(hour=1, minute=30, second=0, microsecond=0)
            add_event(
                session,
                title=title,
                org_id=world.branch_a_id,
                venue_id=world.venue_a_id,
                kind=kind,
                start_at=start,
                end_at=start + timedelta(hours=2),
                now=now,
                caller=CLI_CALLER,
            )
            taps.extend((card_facts, start + timedelta(minutes=minutes)) for card_facts, minutes in tapped)
    return taps
