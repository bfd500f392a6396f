"""Building a synthetic city into an empty database (``ecard admin synth``).

The build is one transaction: it refuses a database that already holds organisations (synthetic
members must never mix with real ones), and its last write is an audit entry ``synth.build``
recording scale, seed, year and row counts. That entry is the marker benchmarks look for to reuse
a database instead of building it again.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, text
from sqlmodel import Session, col, select

from server.audit.service import record
from server.caller import Actor
from server.errors import DatabaseNotEmpty
from server.keyring import Keyring
from server.records.audit import AuditEntry
from server.records.orgs import Organisation
from server.roster.sheet import Tracker, untracked
from server.synth.bulk import (
    BufferedSink,
    PostgresWriter,
    SqliteWriter,
    TableWriter,
    check_sqlite_foreign_keys,
    finish_postgres,
    prepare_postgres,
    prepare_sqlite,
    restore_sqlite,
    secondary_indexes,
)
from server.synth.generate import CityGenerator
from server.synth.scales import Scale

log = logging.getLogger(__name__)

SYNTH_ACTION = "synth.build"
SYNTH_ACTOR = Actor("synth", "合成数据生成器")


@dataclass(frozen=True)
class SynthReport:
    scale: str
    seed: int
    year: int
    rows: dict[str, int]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "seed": self.seed,
            "year": self.year,
            "rows": self.rows,
            "seconds": self.seconds,
        }


def build_city(
    engine: Engine,
    *,
    keyring: Keyring,
    scale: Scale,
    seed: int,
    year: int,
    now: datetime,
    track: Tracker = untracked,
) -> SynthReport:
    """Generate and write a synthetic city-year into the (migrated, empty) database.

    ``keyring`` must be the server's: card bindings hold its digests, as real ones do.

    Raises:
        DatabaseNotEmpty: the database already has organisations.
    """
    started = time.perf_counter()
    engine.dispose()  # idle pooled connections would keep SQLite from leaving WAL mode for the load
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            prepare_sqlite(connection)
        try:
            with connection.begin():
                if connection.execute(select(func.count()).select_from(Organisation)).scalar_one():
                    raise DatabaseNotEmpty()
                if not sqlite:
                    prepare_postgres(connection)
                indexes = secondary_indexes()
                for index in indexes:
                    index.drop(connection)
                writer: TableWriter = SqliteWriter(connection) if sqlite else PostgresWriter(connection)
                sink = BufferedSink(writer)
                generator = CityGenerator(scale=scale, seed=seed, year=year, keyring=keyring)
                generator.build_skeleton(sink)
                generator.build_year(sink, track)
                sink.flush()
                for index in track(indexes, label="重建索引", total=len(indexes)):
                    index.create(connection)
                connection.execute(
                    text(
                        "UPDATE kiosk SET last_seq = "
                        "(SELECT max(claimed_seq) FROM tap WHERE tap.kiosk_id = kiosk.id)"
                    )
                )
                if sqlite:
                    dangling = check_sqlite_foreign_keys(connection)
                    if dangling:
                        raise RuntimeError(f"synthetic data refers to missing rows: {dangling}")
                else:
                    finish_postgres(connection)
                connection.exec_driver_sql("ANALYZE")
                report = SynthReport(
                    scale=scale.name.value,
                    seed=seed,
                    year=year,
                    rows={table: count for table, count in sink.counts.items() if count},
                    seconds=round(time.perf_counter() - started, 1),
                )
                with Session(bind=connection) as session:
                    record(
                        session,
                        actor=SYNTH_ACTOR,
                        action=SYNTH_ACTION,
                        object_type="database",
                        object_id=f"{scale.name.value}/{seed}/{year}",
                        org_id=None,
                        at=now,
                        reason="合成数据（非真实党员信息）",
                        detail=report.as_dict(),
                    )
        finally:
            if sqlite:
                restore_sqlite(connection)
    log.info(
        "synthetic %s city (seed %d, year %d) built in %.0f s", scale.name.value, seed, year, report.seconds
    )
    return report


def synth_marker(session: Session) -> dict[str, Any] | None:
    """What the synthetic build recorded (scale, seed, year, rows), or None for other databases."""
    entry = session.exec(
        select(AuditEntry)
        .where(AuditEntry.action == SYNTH_ACTION)
        .order_by(col(AuditEntry.id).desc())
        .limit(1)
    ).first()
    if entry is None:
        return None
    detail: dict[str, Any] = json.loads(entry.detail)
    return detail
