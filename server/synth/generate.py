"""The synthetic city, row by row: deterministic for a (scale, seed, year), independent of the
database it is written to.

What it models (docs/domain-rules.md §1–§2):

* **Tree.** Each 基层党委 has 0–4 党总支 and 3–11 党支部 of its own; each 党总支 3–7 党支部; about one
  branch in twelve is a 联合党支部 (3–15 members), the others have 5–50 members (mostly 25–40);
  branches of 36 or more are split into 2–3 党小组 holding all their members.
* **Members.** 72 % men, 6 % 预备党员; 2 % join during the year, 0.5 % transfer out during it,
  1.5 % have an approved exemption (illness, maternity, away) for two to six months. Most attend
  85 % of their meetings; one in ten about two in three; 3 % hardly ever (the six-month rule's
  cases). 97 % have a 易通卡 bound (by keyed digest, like a real binding).
* **Committees.** Branches with at least 7 full members have a 支部委员会 of 3 or 5 (书记 first);
  the others a 书记 only.
* **Meetings.** Each branch has a fixed day for its monthly 主题党日; the quarter's 党员大会 and 党课
  are often held within it (one event counting for several kinds), otherwise on their own day;
  the 组织生活会 in December; 支委会 monthly where there is a committee; each 党小组 monthly; two
  to four small voluntary activities a month (志愿服务, 走访慰问 …) that one to three members
  join. Each branch keeps to its calendar with its own diligence (70–100 %), so cadence
  reminders have something to find. Each 基层党委 meets monthly (its branch secretaries come) and
  gives a joint 党课 for up to five of its branches once a year. The small activities are what
  brings a city-year to the issue's 570,000 events with only 5 million taps; since an event
  expects every member of its organisation, they pull a branch's overall attendance rate down
  (its meetings' rates stay around 85 %).
* **Taps.** Members tap in from 30 minutes before the start (one in ten late), one in seven taps out
  after the end (签退), a few tap twice; members without a card or who forgot it are entered by
  hand. Absentees sometimes had leave approved. Now and then a member of a neighbouring branch
  comes as a guest, a stray tap lands outside any meeting (stored without the member, as ingest
  does) or an unknown card is tried. Each venue has one kiosk whose sequence numbers follow time.
* **Dues and development** (``server/synth/dues_development.py``): monthly dues for every member
  with a small share in arrears, and a few hundred 发展党员 records.

Times are naive UTC ``datetime`` values throughout (the writers know the columns are UTC), and
ids are assigned here, so the same seed gives the same database on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from server.cards.identifiers import card_no_digest
from server.keyring import Keyring
from server.masking import mask_card_no, mask_name
from server.records import metadata
from server.roster.sheet import Tracker
from server.synth.dues_development import build_dues_and_development
from server.synth.scales import Scale
from server.vocabulary import (
    AttendanceSource,
    BindingStatus,
    CardCheckLevel,
    CommitteeRole,
    EventKind,
    ExemptionReason,
    Gender,
    KioskStatus,
    LeaveStatus,
    MemberCategory,
    MemberStatus,
    OrgKind,
    RejectionCode,
    TapOutcome,
)

# Tables written, in dependency order (a table only refers to tables above it).
SYNTH_TABLES: tuple[str, ...] = (
    "organisation",
    "member",
    "membership_period",
    "member_exemption",
    "committee_seat",
    "card_binding",
    "venue",
    "kiosk",
    "kiosk_key",
    "event",
    "event_organisation",
    "event_kind",
    "leave_request",
    "tap",
    "attendance",
    "dues_month",
    "development_record",
)

# Each table's columns in the order the generator's row tuples carry them: the table's own column
# order, so a column added to a table shows up here (and a generator that forgets it fails the
# synth tests) instead of silently drifting.
COLUMNS: dict[str, tuple[str, ...]] = {
    name: tuple(column.name for column in metadata.tables[name].columns) for name in SYNTH_TABLES
}

Row = tuple[Any, ...]

UTC_OFFSET = timedelta(hours=8)  # Asia/Shanghai, no daylight saving
CHECKIN_LEAD = timedelta(minutes=30)
SIGN_OUT_GRACE = timedelta(minutes=15)  # within the server's 30-minute 签退 grace
SLOTS = ((9, 0, 120), (14, 30, 120), (19, 0, 90))  # local start and minutes
THEME_SLOT, EVENING_SLOT = SLOTS[1], SLOTS[2]

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蔡蒋余杜叶程魏苏吕丁"
    "任沈姚卢傅钟姜崔谭廖范汪陆金石戴贾韦夏邱方侯邹熊孟秦白江阎薛尹段雷黎史龙陶贺顾毛郝龚邵万钱严洪庄"
)
GIVEN = "建国秀英志强丽华明海燕晓东静文斌春梅伟小红国平雪军芳勇敏杰娟涛霞磊艳超玲鹏婷辉洁宇琳刚颖晨欣"
DISTRICTS = ("思明区", "湖里区", "集美区", "海沧区", "同安区", "翔安区")
UNITS = ("街道", "社区", "公司", "学校", "医院", "机关", "园区")
ACTIVITIES = ("志愿服务", "集中学习", "走访慰问", "红色教育参观", "读书分享会", "义务植树", "政策宣讲")
TOPICS = (
    "学习党的二十大精神",
    "学习《中国共产党支部工作条例》",
    "传承红色基因",
    "全面从严治党",
    "为民办实事",
    "基层治理创新",
    "党史学习教育",
)
LEAVE_REASONS = ("出差", "病假", "家中有事", "单位值班", "外出学习")
EXEMPTIONS = (ExemptionReason.ILLNESS, ExemptionReason.MATERNITY, ExemptionReason.AWAY_APPROVED)
_NUMERALS = "零一二三四五六七八九"


def chinese_number(n: int) -> str:
    """1 → 一, 12 → 十二, 23 → 二十三, 105 → 一百零五, 310 → 三百一十 (as in 第二十三党支部); n < 1000."""
    if n < 10:
        return _NUMERALS[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return ("" if tens == 1 else _NUMERALS[tens]) + "十" + (_NUMERALS[ones] if ones else "")
    hundreds, rest = divmod(n, 100)
    head = _NUMERALS[hundreds] + "百"
    if rest == 0:
        return head
    if rest < 10:
        return head + "零" + _NUMERALS[rest]
    return head + ("一" if rest < 20 else "") + chinese_number(rest)


def synthetic_card_no(member_id: int, seed: int) -> str:
    """The made-up 19-digit card number of a synthetic member (distinct per member: 7919 is prime)."""
    return f"3104393{(member_id * 7919 + seed) % 10**12:012d}"


class RowSink(Protocol):
    def add(self, table: str, row: Row) -> None: ...


@dataclass(eq=False)
class SynMember:
    id: int
    name: str
    masked: str
    org_id: int
    category: MemberCategory
    engagement: float
    card_hmac: str | None
    joined: datetime | None  # joined the organisation during the year
    left: datetime | None  # transferred out during the year
    exempt: tuple[datetime, datetime] | None

    def expected_at(self, at: datetime) -> bool:
        """A member of the organisation at ``at`` and not exempt then."""
        if self.joined is not None and at < self.joined:
            return False
        if self.left is not None and at >= self.left:
            return False
        return not (self.exempt is not None and self.exempt[0] <= at < self.exempt[1])


@dataclass(eq=False)
class SynVenue:
    id: int
    kiosk_id: str
    kid: str
    seq: int = 0


@dataclass(eq=False)
class SynBranch:
    id: int
    name: str
    venue: SynVenue
    diligence: float
    theme_weekday: int
    theme_week: int
    members: list[SynMember] = field(default_factory=list)
    groups: list[tuple[int, list[SynMember]]] = field(default_factory=list)
    seats: list[tuple[SynMember, CommitteeRole]] = field(default_factory=list)

    def person(self, role: CommitteeRole) -> int | None:
        return next((member.id for member, seat in self.seats if seat == role), None)


@dataclass(eq=False)
class SynCommittee:
    id: int
    name: str
    venue: SynVenue
    branches: list[SynBranch] = field(default_factory=list)


@dataclass(frozen=True)
class SynEvent:
    id: int
    title: str
    org_id: int
    venue: SynVenue
    kinds: tuple[EventKind, ...]
    start: datetime
    end: datetime

    @property
    def opens(self) -> datetime:
        return self.start - CHECKIN_LEAD


class CityGenerator:
    """Builds the city into a :class:`RowSink`: :meth:`build_skeleton` first (organisations,
    people, cards, venues, kiosks), then :meth:`build_year` (meetings, leave, taps, attendance)."""

    def __init__(self, *, scale: Scale, seed: int, year: int, keyring: Keyring) -> None:
        self.scale = scale
        self.seed = seed
        self.year = year
        self.keyring = keyring
        self.rng = random.Random(f"ecard-synth/{scale.name}/{seed}/{year}")
        self.committees: list[SynCommittee] = []
        self._next_ids: dict[str, int] = {}
        self.year_start = datetime(year, 1, 1) - UTC_OFFSET
        self.long_ago = datetime(year - 3, 1, 1) - UTC_OFFSET  # when cards and seats predate the year

    def next_id(self, table: str) -> int:
        value = self._next_ids.get(table, 0) + 1
        self._next_ids[table] = value
        return value

    # --- the tree, people and devices --------------------------------------------------------------

    def build_skeleton(self, out: RowSink) -> None:
        for number in range(1, self.scale.committees + 1):
            self.committees.append(self._committee(out, number))

    def _committee(self, out: RowSink, number: int) -> SynCommittee:
        rng = self.rng
        name = f"{rng.choice(DISTRICTS)}第{chinese_number(number)}{rng.choice(UNITS)}党委"
        committee_id = self._org(out, name, OrgKind.BASIC_COMMITTEE, None)
        committee = SynCommittee(committee_id, name, self._venue(out, f"{name}党群服务中心", committee_id))
        # The tiny scale must still show every level of the tree.
        generals = rng.randint(1 if self.scale.committees == 1 else 0, 4)
        parents = [committee_id] * rng.randint(3, 11)
        for general in range(1, generals + 1):
            general_id = self._org(
                out, f"第{chinese_number(general)}党总支", OrgKind.GENERAL_BRANCH, committee_id
            )
            parents += [general_id] * rng.randint(3, 7)
        numbers: dict[int, int] = {}
        for parent_id in parents:
            numbers[parent_id] = numbers.get(parent_id, 0) + 1
            committee.branches.append(self._branch(out, committee, parent_id, numbers[parent_id]))
        return committee

    def _branch(self, out: RowSink, committee: SynCommittee, parent_id: int, number: int) -> SynBranch:
        rng = self.rng
        joint = rng.random() < 0.08
        kind = OrgKind.JOINT_BRANCH if joint else OrgKind.BRANCH
        name = f"第{chinese_number(number)}{'联合' if joint else ''}党支部"
        branch_id = self._org(out, name, kind, parent_id)
        venue = self._venue(out, f"{committee.name}{name}党员活动室", branch_id)
        size = round(rng.triangular(3, 15, 6) if joint else rng.triangular(5, 50, 32))
        branch = SynBranch(
            id=branch_id,
            name=name,
            venue=venue,
            diligence=rng.uniform(0.7, 1.0),
            theme_weekday=rng.randrange(5),
            theme_week=rng.randrange(3),
        )
        group_ids = []
        if size >= 36:
            group_ids = [
                self._org(out, f"第{chinese_number(g)}党小组", OrgKind.PARTY_GROUP, branch_id)
                for g in range(1, (2 if size < 44 else 3) + 1)
            ]
        members = [
            self._member(out, group_ids[i % len(group_ids)] if group_ids else branch_id) for i in range(size)
        ]
        branch.members = members
        branch.groups = [(group_id, members[i :: len(group_ids)]) for i, group_id in enumerate(group_ids)]
        self._seats(out, branch)
        return branch

    def _org(self, out: RowSink, name: str, kind: OrgKind, parent_id: int | None) -> int:
        org_id = self.next_id("organisation")
        out.add("organisation", (org_id, name, kind.value, parent_id, self.long_ago, None))  # no founded_at
        return org_id

    def _venue(self, out: RowSink, name: str, org_id: int) -> SynVenue:
        venue_id = self.next_id("venue")
        out.add("venue", (venue_id, name[:200], org_id, self.long_ago, False))
        number = self.next_id("kiosk")
        kiosk_id, kid = f"K-{number:06d}", f"synth-{number:06d}"
        # A well-formed key nobody holds: synthetic kiosks cannot sign real taps.
        public_key = base64.urlsafe_b64encode(self.rng.randbytes(32)).rstrip(b"=").decode()
        out.add(
            "kiosk",
            (
                kiosk_id,
                f"{name[:180]}签到机",
                venue_id,
                KioskStatus.ACTIVE.value,
                public_key,
                kid,
                "synth",
                self.long_ago,
                None,
                None,
                None,
                self.long_ago,
            ),
        )
        out.add("kiosk_key", (kid, kiosk_id, public_key, self.long_ago, None, None))
        return SynVenue(venue_id, kiosk_id, kid)

    def _member(self, out: RowSink, org_id: int) -> SynMember:
        rng = self.rng
        member_id = self.next_id("member")
        name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))
        category = MemberCategory.PROBATIONARY if rng.random() < 0.06 else MemberCategory.FULL
        roll = rng.random()
        engagement = (
            rng.uniform(0.02, 0.15) if roll < 0.03 else rng.uniform(0.5, 0.8) if roll < 0.13 else 0.85
        )
        joined = left = None
        change = rng.random()
        if change < 0.02:
            joined = self.year_start + timedelta(days=rng.randrange(30, 330), hours=1)
        elif change < 0.025:
            left = self.year_start + timedelta(days=rng.randrange(30, 330), hours=1)
        exempt = None
        if rng.random() < 0.015:
            starts = self.year_start + timedelta(days=rng.randrange(0, 300))
            exempt = (starts, starts + timedelta(days=rng.randrange(60, 180)))
        card_hmac = None
        if rng.random() < 0.97:
            card_no = synthetic_card_no(member_id, self.seed)
            card_hmac = card_no_digest(self.keyring, card_no)
            out.add(
                "card_binding",
                (
                    self.next_id("card_binding"),
                    member_id,
                    card_hmac,
                    None,
                    mask_card_no(card_no),
                    None,
                    BindingStatus.ACTIVE.value,
                    self.long_ago,
                    None,
                    None,
                    CardCheckLevel.CARD_NUMBER.value,
                ),
            )
        gender = Gender.MALE if rng.random() < 0.72 else Gender.FEMALE
        status = MemberStatus.TRANSFERRED_OUT if left else MemberStatus.ACTIVE
        out.add(
            "member",
            (
                *(member_id, name, org_id, category.value, status.value, gender.value, joined, self.long_ago),
                self.next_id(f"roster_position:{org_id}"),  # 花名册 order: as generated
            ),
        )
        out.add(
            "membership_period",
            (self.next_id("membership_period"), member_id, org_id, category.value, joined, left),
        )
        if exempt is not None:
            out.add(
                "member_exemption",
                (
                    self.next_id("member_exemption"),
                    member_id,
                    rng.choice(EXEMPTIONS).value,
                    "",
                    exempt[0],
                    exempt[1],
                    "支部书记",
                    exempt[0],
                ),
            )
        return SynMember(
            member_id, name, mask_name(name), org_id, category, engagement, card_hmac, joined, left, exempt
        )

    def _seats(self, out: RowSink, branch: SynBranch) -> None:
        eligible = [
            m for m in branch.members if m.category == MemberCategory.FULL and not (m.joined or m.left)
        ]
        roles = (
            [CommitteeRole.SECRETARY, CommitteeRole.ORGANISATION, CommitteeRole.PROPAGANDA]
            if len(eligible) >= 7
            else [CommitteeRole.SECRETARY]
        )
        if len(eligible) >= 30:
            roles += [CommitteeRole.DISCIPLINE, CommitteeRole.DEPUTY_SECRETARY]
        for member, role in zip(
            self.rng.sample(eligible, min(len(roles), len(eligible))), roles, strict=False
        ):
            # Committee members come to meetings: that is partly why they were elected.
            member.engagement = max(member.engagement, 0.9)
            branch.seats.append((member, role))
            out.add(
                "committee_seat",
                (self.next_id("committee_seat"), branch.id, member.id, role.value, self.long_ago, None),
            )

    # --- the year ----------------------------------------------------------------------------------

    def build_year(self, out: RowSink, track: Tracker) -> None:
        for committee in track(self.committees, label="会议与刷卡", total=len(self.committees)):
            for branch in committee.branches:
                self._branch_year(out, committee, branch)
            self._committee_year(out, committee)
        build_dues_and_development(self, out)

    def _branch_year(self, out: RowSink, committee: SynCommittee, branch: SynBranch) -> None:
        rng = self.rng
        planned: list[tuple[datetime, tuple[int, int, int], str, tuple[EventKind, ...], int, str]] = []
        used: set[tuple[int, int]] = set()  # (day of year, slot start hour) taken at the venue

        def plan(
            day: datetime, slot: tuple[int, int, int], title: str, kinds: tuple[EventKind, ...], org: int
        ) -> None:
            while (day.timetuple().tm_yday, slot[0]) in used and day.month == (day + timedelta(days=1)).month:
                day += timedelta(days=1)
            used.add((day.timetuple().tm_yday, slot[0]))
            planned.append((day, slot, title, kinds, org, rng.choice(TOPICS)))

        held = branch.diligence
        has_committee = len(branch.seats) >= 3
        for month in range(1, 13):
            theme_day = self._nth_weekday(month, branch.theme_weekday, branch.theme_week)
            quarter_end, quarter_mid = month % 3 == 0, month % 3 == 2
            kinds = [EventKind.THEME_DAY]
            if quarter_end:
                if rng.random() < 0.6:
                    kinds.append(EventKind.BRANCH_GENERAL)
                elif rng.random() < held:
                    general_day = self._shift_in_month(theme_day, 7)
                    plan(
                        general_day,
                        EVENING_SLOT,
                        f"{month // 3}季度支部党员大会",
                        (EventKind.BRANCH_GENERAL,),
                        branch.id,
                    )
            if quarter_mid:
                if rng.random() < 0.5:
                    kinds.append(EventKind.LECTURE)
                elif rng.random() < held * 0.95:
                    lecture_day = self._shift_in_month(theme_day, 14)
                    plan(lecture_day, SLOTS[0], f"{month // 3 + 1}季度党课", (EventKind.LECTURE,), branch.id)
            if rng.random() < held:
                plan(theme_day, THEME_SLOT, f"{month}月主题党日", tuple(kinds), branch.id)
            if has_committee and rng.random() < held:
                plan(
                    self._shift_in_month(theme_day, -3),
                    EVENING_SLOT,
                    f"{month}月支委会",
                    (EventKind.COMMITTEE,),
                    branch.id,
                )
            for index, (group_id, _) in enumerate(branch.groups, start=1):
                if rng.random() < held:
                    group_day = self._shift_in_month(theme_day, index + 1)
                    plan(group_day, EVENING_SLOT, f"{month}月党小组会", (EventKind.GROUP,), group_id)
            for _ in range(rng.randint(2, 4)):
                day = datetime(self.year, month, rng.randint(1, 28))
                plan(day, rng.choice(SLOTS), rng.choice(ACTIVITIES), (EventKind.OTHER,), branch.id)
        if rng.random() < held:
            review_day = self._nth_weekday(12, rng.randrange(5), 2)
            kinds_review = (EventKind.REVIEW_MEETING, EventKind.APPRAISAL, EventKind.BRANCH_GENERAL)
            title = f"{self.year}年度组织生活会和民主评议党员"
            plan(review_day, SLOTS[0], title, kinds_review, branch.id)

        planned.sort(key=lambda p: (p[0], p[1]))
        group_members = dict(branch.groups)
        for day, slot, title, event_kinds, org_id, topic in planned:
            event = self._event(out, title, org_id, branch.venue, event_kinds, day, slot, topic, branch)
            main = event_kinds[0]
            if main == EventKind.COMMITTEE:
                self._attend(out, event, [m for m, _ in branch.seats], committee, branch)
            elif main == EventKind.GROUP:
                self._attend(out, event, group_members[org_id], committee, branch)
            elif main == EventKind.OTHER:
                active = [m for m in branch.members if m.expected_at(event.start)]
                volunteers = rng.sample(active, min(len(active), rng.randint(1, 3)))
                self._attend(out, event, volunteers, committee, branch, leave=False)
            else:
                self._attend(out, event, branch.members, committee, branch, guests=True)

    def _committee_year(self, out: RowSink, committee: SynCommittee) -> None:
        rng = self.rng
        secretaries = [
            m for b in committee.branches for m, role in b.seats if role == CommitteeRole.SECRETARY
        ]
        lecture_month = rng.randint(4, 6)
        for month in range(1, 13):
            day = datetime(self.year, month, rng.randint(1, 20))
            event = self._event(
                out,
                f"{month}月党委会",
                committee.id,
                committee.venue,
                (EventKind.OTHER,),
                day,
                SLOTS[0],
                "",
                None,
            )
            self._attend(
                out, event, rng.sample(secretaries, min(len(secretaries), 7)), committee, None, leave=False
            )
            if month == lecture_month:
                partners = rng.sample(committee.branches, min(5, len(committee.branches)))
                lecture = self._event(
                    out,
                    "党委书记讲党课",
                    committee.id,
                    committee.venue,
                    (EventKind.LECTURE,),
                    day + timedelta(days=3),
                    SLOTS[1],
                    rng.choice(TOPICS),
                    None,
                    joint=[b.id for b in partners],
                )
                for branch in partners:
                    self._attend(out, lecture, branch.members, committee, branch)

    def _event(
        self,
        out: RowSink,
        title: str,
        org_id: int,
        venue: SynVenue,
        kinds: tuple[EventKind, ...],
        day: datetime,
        slot: tuple[int, int, int],
        topic: str,
        branch: SynBranch | None,
        joint: Sequence[int] = (),
    ) -> SynEvent:
        hour, minute, minutes = slot
        start = day.replace(hour=hour, minute=minute) - UTC_OFFSET
        end = start + timedelta(minutes=minutes)
        event_id = self.next_id("event")
        chair = branch.person(CommitteeRole.SECRETARY) if branch else None
        recorder = branch.person(CommitteeRole.ORGANISATION) if branch else None
        out.add(
            "event",
            (
                event_id,
                title,
                org_id,
                venue.id,
                kinds[0].value,
                start,
                end,
                start - CHECKIN_LEAD,
                end,
                start,
                chair,
                recorder,
                topic,
                start - timedelta(days=7),
            ),
        )
        for holder in (org_id, *joint):
            out.add("event_organisation", (event_id, holder))
        for kind in kinds:
            out.add("event_kind", (event_id, kind.value))
        return SynEvent(event_id, title, org_id, venue, kinds, start, end)

    def _attend(
        self,
        out: RowSink,
        event: SynEvent,
        people: Sequence[SynMember],
        committee: SynCommittee,
        branch: SynBranch | None,
        *,
        leave: bool = True,
        guests: bool = False,
    ) -> None:
        rng = self.rng
        for member in people:
            if not member.expected_at(event.start):
                continue
            if rng.random() < member.engagement:
                self._check_in(out, event, member)
            elif leave and rng.random() < 0.3:
                self._leave(out, event, member)
        if guests and branch is not None and rng.random() < 0.05 and len(committee.branches) > 1:
            other = rng.choice([b for b in committee.branches if b is not branch])
            guest = rng.choice(other.members)
            if guest.expected_at(event.start):
                self._check_in(out, event, guest)
        if rng.random() < 0.01:
            self._tap(
                out,
                event.venue,
                event.start + timedelta(minutes=rng.randint(-20, 20)),
                None,
                None,
                unknown=True,
            )

    def _check_in(self, out: RowSink, event: SynEvent, member: SynMember) -> None:
        rng = self.rng
        if member.card_hmac is None or rng.random() < 0.005:
            # No card, or forgot it: the recorder enters the member by hand.
            out.add(
                "attendance",
                (
                    self.next_id("attendance"),
                    event.id,
                    member.id,
                    event.start,
                    event.start,
                    0,
                    None,
                    None,
                    event.start,  # manual_at
                    AttendanceSource.MANUAL.value,
                    "未带卡，记录人补录",
                    "记录人",
                ),
            )
            return
        if rng.random() < 0.1:
            first_at = event.start + timedelta(seconds=rng.randint(60, 1200))
        else:
            first_at = event.opens + timedelta(seconds=rng.randint(0, 1790))
        first_id = self._tap(out, event.venue, first_at, member, event, message="签到成功")
        last_id, last_at, count = first_id, first_at, 1
        if rng.random() < 0.03:
            last_at = first_at + timedelta(seconds=rng.randint(5, 60))
            last_id = self._tap(out, event.venue, last_at, member, event, message="已签到，无需重复刷卡")
            count += 1
        if rng.random() < 0.15:
            last_at = event.end + timedelta(seconds=rng.randint(0, int(SIGN_OUT_GRACE.total_seconds())))
            last_id = self._tap(out, event.venue, last_at, member, event, message="签退成功")
            count += 1
        out.add(
            "attendance",
            (
                self.next_id("attendance"),
                event.id,
                member.id,
                first_at,
                last_at,
                count,
                first_id,
                last_id,
                None,  # manual_at
                AttendanceSource.TAP.value,
                "",
                "",
            ),
        )
        if rng.random() < 0.005:
            # Tapped again hours later, when no meeting was on: kept under the card only.
            self._tap(out, event.venue, event.end + timedelta(hours=3), member, None)

    def _leave(self, out: RowSink, event: SynEvent, member: SynMember) -> None:
        rng = self.rng
        requested = event.start - timedelta(days=rng.randint(1, 3), hours=rng.randint(0, 8))
        approved = rng.random() < 0.9
        out.add(
            "leave_request",
            (
                self.next_id("leave_request"),
                event.id,
                member.id,
                rng.choice(LEAVE_REASONS),
                (LeaveStatus.APPROVED if approved else LeaveStatus.REJECTED).value,
                requested,
                "本人",
                requested + timedelta(hours=4),
                "支部书记",
                "" if approved else "会议重要，请尽量参加",
            ),
        )

    def _tap(
        self,
        out: RowSink,
        venue: SynVenue,
        at: datetime,
        member: SynMember | None,
        event: SynEvent | None,
        *,
        message: str = "",
        unknown: bool = False,
    ) -> int:
        venue.seq += 1
        tap_id = self.next_id("tap")
        digest = hashlib.sha256(f"synth/{self.seed}/{venue.kiosk_id}/{venue.seq}".encode()).hexdigest()
        card: str | None
        if unknown:
            card, member_id, event_id, title = digest, None, None, None
            outcome, code, name, shown = (
                TapOutcome.REJECTED,
                RejectionCode.UNKNOWN_CARD,
                None,
                "未登记的卡，请联系组织委员",
            )
        elif event is None:
            assert member is not None
            card, member_id, event_id, title = member.card_hmac, None, None, None
            outcome, code, name, shown = (
                TapOutcome.REJECTED,
                RejectionCode.NO_EVENT,
                member.masked,
                "当前没有可签到的活动",
            )
        else:
            assert member is not None
            card, member_id, event_id, title = member.card_hmac, member.id, event.id, event.title
            outcome, code, name, shown = TapOutcome.ACCEPTED, None, member.masked, message
        out.add(
            "tap",
            (
                tap_id,
                at + timedelta(seconds=2),
                venue.kid,
                venue.kiosk_id,
                venue.seq,
                venue.seq,
                digest,
                at,
                "checkin",
                card,
                None,
                "pcsc",
                None,
                None,
                None,
                member_id,
                event_id,
                None,  # redecision: decided at ingest
                None,  # redecided_at
                outcome.value,
                code.value if code else None,
                name,
                title,
                shown,
            ),
        )
        return tap_id

    # --- dates ---------------------------------------------------------------------------------------

    def _nth_weekday(self, month: int, weekday: int, week: int) -> datetime:
        """The (week+1)-th given weekday of the month (0 = Monday): a branch's fixed 主题党日."""
        first_weekday, _ = calendar.monthrange(self.year, month)
        day = 1 + (weekday - first_weekday) % 7 + 7 * week
        return datetime(self.year, month, day)

    def _shift_in_month(self, day: datetime, days: int) -> datetime:
        """``day`` moved by ``days``, reflected back into the same month when it would leave it."""
        moved = day + timedelta(days=days)
        if moved.month != day.month or moved.year != day.year:
            moved = day - timedelta(days=days)
        return moved

    def venues(self) -> Iterator[SynVenue]:
        for committee in self.committees:
            yield committee.venue
            for branch in committee.branches:
                yield branch.venue

    def totals(self) -> dict[str, int]:
        """Rows made per table so far (tables with generated ids)."""
        return dict(self._next_ids)
