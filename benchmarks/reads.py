"""Fast reads at scale (issue #11 part 4): the numbers ``make bench`` reports. Not a test.

* :func:`measure_sheet_1000_ms` — the sign-in sheet (签到表) of a 1,000-member event with every
  member checked in (签到 and 签退 taps), built through
  ``server.attendance.service.build_attendance_sheet``, the function behind
  ``GET /api/v1/events/{id}/attendance``, its web page and its PDF. Target: under 50 ms on SQLite
  and PostgreSQL.
* :func:`measure_ledger_org_year_p95_ms` — the 基层党委 year ledger and the 基层党委 subtree
  reminders on the synthetic city (``benchmarks/ledger.py`` builds and caches it). Target: p95
  under 100 ms on PostgreSQL.

Run: ``.venv/bin/python benchmarks/reads.py [--sqlite URL] [--pg URL] [--scale town]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, make_url
from sqlmodel import Session, col, select

from server.attendance.service import build_attendance_sheet
from server.caller import CLI_CALLER
from server.db import make_engine
from server.migrate import migrate
from server.records.attendance import Attendance
from server.records.events import Event, EventKindTag, EventOrganisation
from server.records.orgs import Member, MembershipPeriod, Organisation
from server.records.taps import Tap
from server.records.venues import Venue
from server.synth.scales import ScaleName
from server.vocabulary import (
    CardCheckLevel,
    EventKind,
    MemberCategory,
    MemberStatus,
    OrgKind,
    TapOutcome,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
# benchmarks/ is not a package: reach its ledger.py whether this file runs or is imported.
import ledger as city_bench

TZ = ZoneInfo("Asia/Shanghai")
SHEET_MEMBERS = 1000
SHEET_ORG_NAME = "读性能基准党支部（1000人）"  # marks the benchmark's event in a shared database
SHEET_RUNS = 21
WARM_UP = 3
LEDGER_QUERY = "year ledger, 基层党委"  # benchmarks/ledger.py's names
REMINDERS_QUERY = "reminders, 基层党委 subtree"


def measure_sheet_1000_ms(database_url: str) -> float:
    """Median time in ms to build the sign-in sheet of a 1,000-member event, all checked in.

    The database is migrated if needed; the event is built once and found again afterwards by its
    organisation's name, so a database can be reused across runs (and holds other data too)."""
    if make_url(database_url).get_backend_name() != "sqlite":
        _ensure_pg_database(database_url)
    engine = make_engine(database_url)
    try:
        migrate(engine)
        event_id = _sheet_event(engine)
        for _ in range(WARM_UP):
            _build_sheet(engine, event_id)
        return statistics.median(_build_sheet(engine, event_id) for _ in range(SHEET_RUNS))
    finally:
        engine.dispose()


def measure_ledger_org_year_p95_ms(pg_url: str, *, scale: str = "city") -> dict[str, float]:
    """p95 (ms) of the 基层党委 year ledger and of the 基层党委 subtree reminders on PostgreSQL,
    over benchmarks/ledger.py's sample of organisations on its synthetic city (built on first use,
    which takes long at city scale)."""
    engine = city_bench.prepare_database(pg_url, scale=ScaleName(scale), seed=1, year=2025, rebuild=False)
    try:
        timings = city_bench.measure(
            engine, "pg", year=2025, sample=40, seed=1, repeat=3, only=(LEDGER_QUERY, REMINDERS_QUERY)
        )
    finally:
        engine.dispose()
    by_query = {timing.query: timing for timing in timings}
    return {
        "ledger_org_year_p95_ms_pg": _p95(by_query[LEDGER_QUERY].samples),
        "reminders_subtree_p95_ms_pg": _p95(by_query[REMINDERS_QUERY].samples),
    }


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _build_sheet(engine: Engine, event_id: int) -> float:
    # A fresh session per call, as per request: no identity map carried over between runs.
    with Session(engine) as session:
        started = time.perf_counter()
        build_attendance_sheet(session, event_id=event_id, caller=CLI_CALLER, tz=TZ)
        return (time.perf_counter() - started) * 1000


def _sheet_event(engine: Engine) -> int:
    with Session(engine) as session:
        found = session.exec(
            select(Event.id)
            .join(Organisation, col(Organisation.id) == col(Event.org_id))
            .where(Organisation.name == SHEET_ORG_NAME)
        ).first()
        if found is not None:
            return found
        event_id = _build_sheet_event(session)
        session.commit()
        return event_id


def _build_sheet_event(session: Session) -> int:
    """A branch of 1,000 members (one in ten probationary), one 支部党员大会, and for every
    member a 签到 tap and, for most, a 签退 tap 75 minutes later."""
    now = datetime(2025, 6, 1, 8, tzinfo=TZ)
    start = datetime(2025, 6, 1, 9, tzinfo=TZ)
    org = Organisation(name=SHEET_ORG_NAME, kind=OrgKind.BRANCH, created_at=now)
    session.add(org)
    session.flush()
    assert org.id is not None
    venue = Venue(name="读性能基准会场", org_id=org.id, created_at=now)
    session.add(venue)
    session.flush()
    assert venue.id is not None
    members = [
        Member(
            name=f"基准党员{index:04d}",
            org_id=org.id,
            category=MemberCategory.PROBATIONARY if index % 10 == 0 else MemberCategory.FULL,
            status=MemberStatus.ACTIVE,
            joined_org_at=datetime(2020, 1, 1, tzinfo=TZ),
            created_at=now,
            roster_position=index,
        )
        for index in range(SHEET_MEMBERS)
    ]
    session.add_all(members)
    session.flush()
    member_ids = [member.id for member in members if member.id is not None]
    session.add_all(
        MembershipPeriod(
            member_id=member.id,
            org_id=org.id,
            category=member.category,
            started_at=member.joined_org_at,
        )
        for member in members
        if member.id is not None
    )
    event = Event(
        title="读性能基准支部党员大会",
        org_id=org.id,
        venue_id=venue.id,
        kind=EventKind.BRANCH_GENERAL,
        start_at=start,
        end_at=start + timedelta(hours=2),
        checkin_opens_at=start - timedelta(minutes=30),
        checkin_closes_at=start + timedelta(hours=2, minutes=30),
        late_after=start,
        chair_member_id=member_ids[0],
        recorder_member_id=member_ids[1],
        created_at=now,
    )
    session.add(event)
    session.flush()
    assert event.id is not None
    session.add(EventOrganisation(event_id=event.id, org_id=org.id))
    session.add(EventKindTag(event_id=event.id, kind=EventKind.BRANCH_GENERAL))

    def tap(member_id: int, index: int, at: datetime) -> Tap:
        return Tap(
            received_at=at,
            kid="bench",
            payload_digest=f"bench-{event.id}-{member_id}-{index}",
            occurred_at=at,
            card_check=CardCheckLevel.UID if member_id % 3 else CardCheckLevel.CARD_NUMBER,
            member_id=member_id,
            event_id=event.id,
            outcome=TapOutcome.ACCEPTED,
            display_message="签到成功",
        )

    # Most members also sign out (签退) 75 minutes later; every seventh does not.
    arrivals = {
        member_id: start - timedelta(minutes=20) + timedelta(seconds=2 * index)
        for index, member_id in enumerate(member_ids)
    }
    firsts = {member_id: tap(member_id, 0, at) for member_id, at in arrivals.items()}
    lasts = {
        member_id: tap(member_id, 1, at + timedelta(minutes=75))
        for index, (member_id, at) in enumerate(arrivals.items())
        if index % 7
    }
    session.add_all([*firsts.values(), *lasts.values()])
    session.flush()
    attendance = []
    for member_id, first in firsts.items():
        last = lasts.get(member_id, first)
        assert first.occurred_at is not None
        assert last.occurred_at is not None
        attendance.append(
            Attendance(
                event_id=event.id,
                member_id=member_id,
                first_tap_at=first.occurred_at,
                last_tap_at=last.occurred_at,
                tap_count=1 if last is first else 2,
                first_tap_id=first.id,
                last_tap_id=last.id,
            )
        )
    session.add_all(attendance)
    session.flush()
    return event.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sqlite", default="sqlite:///var/bench/reads.sqlite")
    parser.add_argument(
        "--pg", default="postgresql+psycopg://postgres:postgres@127.0.0.1:5432/ecard_bench_reads"
    )
    parser.add_argument("--scale", choices=[s.value for s in ScaleName], default=ScaleName.CITY.value)
    parser.add_argument("--city-pg", default=city_bench.DEFAULT_PG_URL)
    parser.add_argument("--skip-city", action="store_true", help="Only the sign-in sheet.")
    args = parser.parse_args()
    print(f"sheet_1000_ms_sqlite {measure_sheet_1000_ms(args.sqlite):.1f}")
    print(f"sheet_1000_ms_pg {measure_sheet_1000_ms(args.pg):.1f}")
    if not args.skip_city:
        for name, value in measure_ledger_org_year_p95_ms(args.city_pg, scale=args.scale).items():
            print(f"{name} {value:.1f}")


def _ensure_pg_database(url: str) -> None:
    import psycopg

    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,)).fetchone()
        if exists is None:
            conn.execute(f'CREATE DATABASE "{parsed.database}"')


if __name__ == "__main__":
    main()
