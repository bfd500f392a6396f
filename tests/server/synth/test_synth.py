"""The synthetic city at tiny scale, on SQLite and PostgreSQL: consistent, deterministic, usable by
the services that read real data, and never written over real data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, text
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from server.attendance.service import build_attendance_sheet
from server.caller import CLI_CALLER
from server.cards.identifiers import card_no_digest
from server.cards.service import find_bound_member
from server.cli import admin_app
from server.db import make_engine, unit_of_work
from server.errors import DatabaseNotEmpty
from server.events.service import find_event_for_tap
from server.keyring import Keyring
from server.ledgers.cadence import CadencePolicy
from server.ledgers.periods import parse_period
from server.ledgers.service import build_org_ledger
from server.migrate import migrate
from server.orgs.service import add_organisation
from server.records.attendance import Attendance
from server.records.events import Event
from server.records.orgs import Member, Organisation
from server.records.taps import Tap
from server.reminders.service import build_reminders
from server.roster.sheet import untracked
from server.synth.generate import CityGenerator, synthetic_card_no
from server.synth.scales import SCALES, ScaleName
from server.synth.service import SynthReport, build_city, synth_marker
from server.vocabulary import EventKind, OrgKind, TapOutcome
from tests.conftest import create_pg_database
from tests.server.conftest import TEST_SECRET

YEAR = 2025
NOW = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")

# Every reference the tap and attendance tables make, as (child, column, parent).
REFERENCES = [
    ("tap", "member_id", "member"),
    ("tap", "event_id", "event"),
    ("attendance", "member_id", "member"),
    ("attendance", "event_id", "event"),
    ("attendance", "first_tap_id", "tap"),
    ("attendance", "last_tap_id", "tap"),
    ("event", "org_id", "organisation"),
    ("event", "venue_id", "venue"),
    ("event_organisation", "event_id", "event"),
    ("event_kind", "event_id", "event"),
    ("leave_request", "event_id", "event"),
    ("member", "org_id", "organisation"),
    ("card_binding", "member_id", "member"),
    ("membership_period", "member_id", "member"),
]


def build(engine: Engine, keyring: Keyring, seed: int = 7) -> SynthReport:
    return build_city(engine, keyring=keyring, scale=SCALES[ScaleName.TINY], seed=seed, year=YEAR, now=NOW)


def count(session: Session, table: str) -> int:
    return int(session.connection().execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one())


@pytest.fixture(scope="module", params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """One tiny city per database for the tests that only read it (a build takes seconds)."""
    if request.param == "sqlite":
        url, drop = f"sqlite:///{tmp_path_factory.mktemp('synth') / 'city.sqlite'}", None
    else:
        server, template = request.getfixturevalue("pg_server"), request.getfixturevalue("pg_template")
        url, drop = create_pg_database(server, prefix="ecard_synth_", template=template)
    engine = make_engine(url)
    try:
        migrate(engine)
        yield Built(engine, build(engine, Keyring(TEST_SECRET.encode())))
    finally:
        engine.dispose()
        if drop is not None:
            drop()


@dataclass(frozen=True)
class Built:
    engine: Engine
    report: SynthReport


def test_counts_match_the_report_and_every_table_is_filled(built: Built) -> None:
    with Session(built.engine) as session:
        for table, rows in built.report.rows.items():
            assert count(session, table) == rows, table
    for table in ("organisation", "member", "card_binding", "event", "event_kind", "tap", "attendance"):
        assert built.report.rows[table] > 0
    assert built.report.rows["tap"] > 5_000  # a year of a 基层党委's meetings


def test_every_reference_points_at_an_existing_row(built: Built) -> None:
    with Session(built.engine) as session:
        for child, column, parent in REFERENCES:
            dangling = session.connection().execute(
                text(
                    f'SELECT count(*) FROM "{child}" c LEFT JOIN "{parent}" p ON p.id = c.{column} '
                    f"WHERE c.{column} IS NOT NULL AND p.id IS NULL"
                )
            )
            assert dangling.scalar_one() == 0, f"{child}.{column}"


def test_taps_fall_in_their_events_windows(built: Built) -> None:
    """Stored times compare correctly in SQL (the bulk writer stores them as the ORM does), and the
    event a tap was filed under is the one the ingest rule finds for it."""
    with Session(built.engine) as session:
        early = session.exec(
            select(func.count())
            .select_from(Attendance)
            .join(Event, col(Event.id) == col(Attendance.event_id))
            .where(col(Attendance.first_tap_at) < col(Event.checkin_opens_at))
        ).one()
        assert early == 0
        sample = session.exec(
            select(Tap).where(Tap.outcome == TapOutcome.ACCEPTED).order_by(col(Tap.id)).limit(40)
        ).all()
        for tap in sample:
            assert tap.occurred_at is not None
            event = session.get(Event, tap.event_id)
            assert event is not None
            if tap.occurred_at < event.checkin_closes_at:  # not a 签退 after the end
                found = find_event_for_tap(session, venue_id=event.venue_id, at=tap.occurred_at)
                assert found is not None
                assert found.venue_id == event.venue_id


def test_the_tree_has_every_level_and_meetings_of_every_kind(built: Built) -> None:
    with Session(built.engine) as session:
        kinds = set(session.exec(select(Organisation.kind)).all())
        assert {OrgKind.BASIC_COMMITTEE, OrgKind.GENERAL_BRANCH, OrgKind.BRANCH, OrgKind.PARTY_GROUP} <= kinds
        tags = {row[0] for row in session.connection().execute(text("SELECT DISTINCT kind FROM event_kind"))}
        assert tags == {kind.value for kind in EventKind}
        starts = session.exec(select(func.min(Event.start_at), func.max(Event.start_at))).one()
        assert starts[0].astimezone(SHANGHAI).year == starts[1].astimezone(SHANGHAI).year == YEAR


def test_a_synthetic_card_finds_its_member(built: Built, keyring: Keyring) -> None:
    """Bindings hold the server keyring's digests, so the card-matching step works as for real cards."""
    with Session(built.engine) as session:
        member_ids = session.exec(select(col(Member.id)).order_by(col(Member.id))).all()
        found = 0
        for member_id in member_ids[:50]:
            assert member_id is not None
            digest = card_no_digest(keyring, synthetic_card_no(member_id, 7))
            member = find_bound_member(session, card_no_hmac=digest, uid_hmac="0" * 64)
            if member is not None:
                assert member.id == member_id
                found += 1
        assert found >= 40  # 97 % carry a card


def test_the_attendance_sheet_service_reads_it(built: Built) -> None:
    with Session(built.engine) as session:
        theme_day = session.exec(
            select(Event).where(Event.kind == EventKind.THEME_DAY).order_by(col(Event.start_at))
        ).first()
        assert theme_day is not None
        assert theme_day.id is not None
        sheet = build_attendance_sheet(session, event_id=theme_day.id, caller=CLI_CALLER, tz=SHANGHAI)
    assert sheet.counts.expected > 0
    assert 0 < sheet.counts.present <= sheet.counts.expected
    assert sheet.present[0].first_tap_at.tzinfo is not None


def test_the_ledger_and_reminder_services_read_it(built: Built) -> None:
    """A branch's year ledger and its 基层党委's reminders come out of the synthetic year with
    what the generator put in: meetings held, cadence checked, members who stopped coming."""
    now = datetime(YEAR, 12, 20, 10, tzinfo=SHANGHAI)
    with Session(built.engine) as session:
        branch_id = session.exec(
            select(col(Organisation.id))
            .where(Organisation.kind == OrgKind.BRANCH)
            .order_by(col(Organisation.id))
        ).first()
        committee_id = session.exec(
            select(col(Organisation.id)).where(Organisation.kind == OrgKind.BASIC_COMMITTEE)
        ).first()
        assert branch_id is not None
        assert committee_id is not None
        ledger = build_org_ledger(
            session,
            org_id=branch_id,
            period=parse_period(str(YEAR), SHANGHAI),
            caller=CLI_CALLER,
            now=now,
            tz=SHANGHAI,
            policy=CadencePolicy(),
        )
        reminders = build_reminders(
            session, org_id=committee_id, caller=CLI_CALLER, now=now, tz=SHANGHAI, policy=CadencePolicy()
        )
    assert ledger.totals.events >= 24  # monthly 主题党日 and small activities, at least
    theme_days = [row for row in ledger.events if EventKind.THEME_DAY in row.kinds]
    assert len(theme_days) >= 8  # a branch keeps to its calendar with 70-100 % diligence
    present, expected = sum(r.present for r in theme_days), sum(r.expected for r in theme_days)
    assert 0.7 < present / expected < 0.95  # most members come to most meetings
    assert ledger.cadence
    assert ledger.members
    assert reminders.inactivity  # the few who hardly ever come


def test_the_build_is_recorded_and_refuses_to_run_twice(built: Built) -> None:
    with Session(built.engine) as session:
        marker = synth_marker(session)
        before = count(session, "tap")
    assert marker is not None
    assert (marker["scale"], marker["seed"], marker["year"]) == ("tiny", 7, YEAR)
    assert marker["rows"] == built.report.rows

    with pytest.raises(DatabaseNotEmpty) as excinfo:
        build(built.engine, Keyring(TEST_SECRET.encode()))
    assert excinfo.value.code == "database_not_empty"
    with Session(built.engine) as session:
        assert count(session, "tap") == before


def test_real_data_is_never_mixed_with_synthetic(engine: Engine, keyring: Keyring) -> None:
    with unit_of_work(engine) as session:
        add_organisation(session, name="真实的党委", kind=OrgKind.BASIC_COMMITTEE, parent_id=None, now=NOW)
    with pytest.raises(DatabaseNotEmpty):
        build(engine, keyring)
    with Session(engine) as session:
        assert count(session, "organisation") == 1
        assert count(session, "member") == 0


def test_ids_continue_after_the_synthetic_rows(engine: Engine, keyring: Keyring) -> None:
    """On PostgreSQL the id sequences were moved past the ids the synth assigned itself."""
    report = build(engine, keyring)
    with unit_of_work(engine) as session:
        org = add_organisation(session, name="新党委", kind=OrgKind.BASIC_COMMITTEE, parent_id=None, now=NOW)
    assert org.id == report.rows["organisation"] + 1


def test_same_seed_same_data_different_seed_different_data(tmp_path: Path, keyring: Keyring) -> None:
    def fingerprint(name: str) -> str:
        engine = make_engine(f"sqlite:///{tmp_path / name}")
        try:
            migrate(engine)
            build(engine, keyring, seed=3)
            with Session(engine) as session:
                rows = session.connection().execute(
                    text(
                        "SELECT group_concat(payload_digest || occurred_at || coalesce(member_id, ''), ',') "
                        "FROM tap"
                    )
                )
                return str(rows.scalar_one())
        finally:
            engine.dispose()

    assert fingerprint("a.sqlite") == fingerprint("b.sqlite")

    class Taps:
        def __init__(self) -> None:
            self.rows: list[tuple[object, ...]] = []

        def add(self, table: str, row: tuple[object, ...]) -> None:
            if table == "tap":
                self.rows.append(row)

    def generated(seed: int) -> list[tuple[object, ...]]:
        generator = CityGenerator(scale=SCALES[ScaleName.TINY], seed=seed, year=YEAR, keyring=keyring)
        sink = Taps()
        generator.build_skeleton(sink)
        generator.build_year(sink, untracked)
        return sink.rows

    assert generated(3) != generated(4)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> None:
    monkeypatch.setenv("ECARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ECARD_SECRET_KEY", TEST_SECRET)
    runner = CliRunner()
    args = ["synth", "--scale", "tiny", "--seed", "2", "--year", str(YEAR), "--json", "--db", database_url]

    first = runner.invoke(admin_app, args)
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert (report["scale"], report["seed"], report["year"]) == ("tiny", 2, YEAR)
    assert report["rows"]["tap"] > 0

    again = runner.invoke(admin_app, args)
    assert again.exit_code == 1
    assert json.loads(again.stdout)["error"] == "database_not_empty"
