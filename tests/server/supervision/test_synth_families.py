"""The synthetic city carries dues and development records, and the two rule families find a
realistic few things in it (so the sweep benchmark exercises them)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlmodel import Session, func, select

from server.db import make_engine
from server.keyring import Keyring
from server.migrate import migrate
from server.records.development import DevelopmentRecord
from server.records.dues import DuesMonth
from server.records.orgs import Member
from server.supervision.development_rules import find_development
from server.supervision.dues_rules import find_dues
from server.synth.scales import SCALES, ScaleName
from server.synth.service import build_city
from server.vocabulary import MemberStatus, ReminderLevel
from tests.server.conftest import TEST_SECRET

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)


def test_a_tiny_city_year_has_dues_arrears_and_development_to_watch(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'city.sqlite'}")
    try:
        migrate(engine)
        report = build_city(
            engine,
            keyring=Keyring(TEST_SECRET.encode()),
            scale=SCALES[ScaleName.TINY],
            seed=7,
            year=2025,
            now=NOW,
        )
        assert report.rows["dues_month"] > 12 * 300
        assert report.rows["development_record"] >= 1
        with Session(engine) as session:
            active = session.exec(
                select(func.count()).select_from(Member).where(Member.status == MemberStatus.ACTIVE)
            ).one()
            with_dues = session.exec(select(func.count(func.distinct(DuesMonth.member_id)))).one()
            assert with_dues >= active
            dues = find_dues(session, now=NOW, tz=SHANGHAI)
            development = find_development(session, now=NOW, tz=SHANGHAI)
            records = session.exec(select(func.count()).select_from(DevelopmentRecord)).one()
        levels = Counter(f.level for f in dues)
        # A small share behind, some of them past six months; most members are up to date.
        assert 0 < len(dues) < active * 0.1
        assert levels[ReminderLevel.NOTICE] > 0
        assert levels[ReminderLevel.ALERT] > 0
        assert len({f.identity for f in dues}) == len(dues)
        assert len(development) <= 3 * records
    finally:
        engine.dispose()
