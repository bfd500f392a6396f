"""The synthetic city's 党费 and 发展党员: monthly dues for every member, a few hundred development
records (docs/supervision.md).

* **Dues.** Every member has a row per month of the year they belonged (from joining, until
  leaving): a standard by tier (1 % exempt, 10 % the 0.2 元 of students and the unemployed, 20 %
  retirees, the rest 8–150 元), paid monthly (70 %), quarterly in the quarter's last month (25 %)
  or for the year in January (5 %). About 2 % of members, and most of those who hardly ever come to
  meetings, stop paying at some month: at the year's end they are three to nine months behind.
* **Development.** One record per 基层党委 plus about one branch in fifty: 入党申请人 (some not yet
  talked to, some past the month), 积极分子, 发展对象 (a few named under a year), 预备党员 linked to
  one of the branch's probationary members, some with 转正 due within a month or overdue.

Drawn from a random stream of their own, so adding them changed nothing else of the city.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from server.records.development import DevelopmentStage
from server.records.dues import DuesSource
from server.vocabulary import MemberCategory

if TYPE_CHECKING:
    from server.synth.generate import CityGenerator, RowSink, SynBranch, SynMember

DUES_TABLES = ("dues_month", "development_record")


def build_dues_and_development(generator: CityGenerator, out: RowSink) -> None:
    from server.synth.generate import GIVEN, SURNAMES

    rng = random.Random(f"ecard-synth-dues/{generator.scale.name}/{generator.seed}/{generator.year}")
    year = generator.year
    written_at = datetime(year, 12, 31, 12)  # naive UTC, like every synthetic time
    year_end = date(year, 12, 31)
    for committee in generator.committees:
        for branch in committee.branches:
            for member in branch.members:
                _member_dues(generator, out, rng, member, written_at)
        chosen = [rng.choice(committee.branches)] if committee.branches else []
        chosen += [b for b in committee.branches if rng.random() < 0.02]
        for branch in chosen:
            name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))
            _development(generator, out, rng, branch, name, year_end, written_at)


def _months(member: SynMember) -> Iterable[int]:
    first = member.joined.month if member.joined is not None else 1
    last = member.left.month if member.left is not None else 12
    return range(first, last + 1)


def _member_dues(
    generator: CityGenerator, out: RowSink, rng: random.Random, member: SynMember, written_at: datetime
) -> None:
    year = generator.year
    tier = rng.random()
    if tier < 0.01:
        standard = 0  # 免交
    elif tier < 0.11:
        standard = 20  # 0.2 元
    elif tier < 0.31:
        standard = rng.randrange(500, 2500, 10)
    else:
        standard = rng.randrange(800, 15000, 10)
    style = rng.random()
    stops = 13
    if rng.random() < (0.6 if member.engagement < 0.2 else 0.02):
        stops = rng.randint(4, 10)
    for month in _months(member):
        paid_on: date | None = None
        if month < stops:
            if style < 0.7:
                paid_on = date(year, month, rng.randint(1, 28))
            elif style < 0.95:
                paid_on = date(year, month + (-month % 3), rng.randint(1, 28))
            else:
                paid_on = date(year, 1, rng.randint(2, 28))
        out.add(
            "dues_month",
            (
                generator.next_id("dues_month"),
                member.id,
                f"{year:04d}-{month:02d}",
                standard,
                standard if paid_on is not None else 0,
                paid_on.isoformat() if paid_on is not None else None,
                DuesSource.SYNTH.value,
                written_at,
            ),
        )


def _development(
    generator: CityGenerator,
    out: RowSink,
    rng: random.Random,
    branch: SynBranch,
    name: str,
    year_end: date,
    written_at: datetime,
) -> None:
    def back(day: date, low: int, high: int) -> date:
        return day - timedelta(days=rng.randint(low, high))

    roll = rng.random()
    talked = activist = candidate = admitted = None
    member_id = None
    if roll < 0.3:
        stage = DevelopmentStage.APPLICANT
        applied = back(year_end, 0, 60)
        if rng.random() < 0.8:
            talked = min(applied + timedelta(days=rng.randint(3, 34)), year_end)
    else:
        if roll < 0.65:
            stage = DevelopmentStage.ACTIVIST
            activist = back(year_end, 10, 500)
        elif roll < 0.8:
            stage = DevelopmentStage.CANDIDATE
            candidate = back(year_end, 5, 150)
            activist = back(candidate, 330 if rng.random() < 0.1 else 366, 450)
        else:
            probationers = [m for m in branch.members if m.category == MemberCategory.PROBATIONARY]
            stage = DevelopmentStage.PROBATIONARY
            admitted = back(year_end, 200, 400)
            candidate = back(admitted, 60, 150)
            activist = back(candidate, 366, 450)
            member_id = rng.choice(probationers).id if probationers else None
        applied = back(activist, 180, 400)
        talked = applied + timedelta(days=rng.randint(3, 33 if rng.random() < 0.95 else 45))
    out.add(
        "development_record",
        (
            generator.next_id("development_record"),
            name,
            branch.id,
            member_id,
            stage.value,
            applied.isoformat(),
            talked.isoformat() if talked else None,
            activist.isoformat() if activist else None,
            candidate.isoformat() if candidate else None,
            admitted.isoformat() if admitted else None,
            None,
            written_at,
            written_at,
        ),
    )
