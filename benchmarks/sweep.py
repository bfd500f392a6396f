"""The daily supervision sweep on the city-year data set (issue #13: under 60 s on PostgreSQL). Not a test.

Uses the synthetic city of ``benchmarks/ledger.py`` (built once, then reused; ``--rebuild`` builds it
again, e.g. after ``ecard admin synth`` learnt to make more). Times three sweeps as of mid-December
of the data year, each in its own transaction, committed:

* the **first** sweep, which opens every reminder of the city (a deployment's first day);
* the **next day's** sweep, the steady state: almost everything is found again and updated;
* a sweep of the same day again (nothing changes), which isolates the cost of evaluating the rules.

Every organisation gets a group robot first (``notify_target`` rows, URLs that are never called),
so each sweep also queues the day's digests, as a deployment would. Each line gives wall seconds,
the seconds spent in each rule family, in storing and in the digests, and the sweep's counts. The
reminders, robots and queued digests are deleted at the end so the city stays reusable.

Run: ``.venv/bin/python benchmarks/sweep.py [--scale town] [--pg-url URL] [--rebuild]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import SecretStr
from sqlalchemy import delete, insert
from sqlmodel import Session, select

from server.config import ServerSettings
from server.notify.service import queue_digests
from server.records.notify import Delivery, DeliveryAttempt, NotifyTarget
from server.records.orgs import Organisation
from server.records.supervision import Reminder, ReminderHistory
from server.supervision import sweep as sweep_module
from server.supervision.service import apply_findings, digest_items
from server.synth.scales import ScaleName
from server.vocabulary import NotifyChannel

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ledger as city_bench

TZ = ZoneInfo("Asia/Shanghai")
TARGET_S = 60.0


def give_every_organisation_a_robot(session: Session, now: datetime) -> int:
    org_ids = list(session.exec(select(Organisation.id)))
    session.execute(
        insert(NotifyTarget),
        [
            {
                "recipient": f"org:{org_id}",
                "channel": NotifyChannel.WEBHOOK,
                "org_id": org_id,
                "address": f"https://robot.invalid/send?key=bench-{org_id}",
                "secret": "bench-secret-0123456789abcdef",
                "created_at": now,
                "updated_at": now,
            }
            for org_id in org_ids
        ],
    )
    session.commit()
    return len(org_ids)


def clean_up(session: Session) -> None:
    for table in (DeliveryAttempt, Delivery, NotifyTarget, ReminderHistory, Reminder):
        session.execute(delete(table))
    session.commit()


def timed_sweep(
    session: Session, settings: ServerSettings, now: datetime
) -> tuple[float, dict[str, float], str]:
    started = time.perf_counter()
    per_family: dict[str, float] = {}
    findings = []
    for check in sweep_module.rule_families(settings):
        family_started = time.perf_counter()
        findings += check.find(session, now, settings.tz)
        per_family[check.family.value] = time.perf_counter() - family_started
    stored_started = time.perf_counter()
    result = apply_findings(
        session,
        findings,
        families={check.family for check in sweep_module.rule_families(settings)},
        now=now,
        escalation=sweep_module.escalation_policy(settings),
        tz=settings.tz,
    )
    session.commit()
    per_family["store"] = time.perf_counter() - stored_started
    digests_started = time.perf_counter()
    result.digests = queue_digests(session, digest_items(session, now=now), now=now, tz=settings.tz).queued
    session.commit()
    per_family["digests"] = time.perf_counter() - digests_started
    return time.perf_counter() - started, per_family, result.summary()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=[s.value for s in ScaleName], default=ScaleName.CITY.value)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--year", type=int, default=2025)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--pg-url", default=city_bench.DEFAULT_PG_URL)
    args = parser.parse_args()

    engine = city_bench.prepare_database(
        args.pg_url, scale=ScaleName(args.scale), seed=args.seed, year=args.year, rebuild=args.rebuild
    )
    settings = ServerSettings(
        database_url=args.pg_url,
        secret_key=SecretStr("sweep-bench-7d2c91f0a4b84e1f9c3a5b6d7e8f0a1b"),
        timezone="Asia/Shanghai",
    )
    day = datetime(args.year, 12, 15, 7, 0, tzinfo=TZ)
    rows = []
    with Session(engine) as session:
        clean_up(session)
        robots = give_every_organisation_a_robot(session, day)
    print(f"{robots} group robots", file=sys.stderr)
    try:
        for label, now in (
            ("first day", day),
            ("next day", day + timedelta(days=1)),
            ("same day again", day + timedelta(days=1, hours=1)),
        ):
            with Session(engine, expire_on_commit=False) as session:
                seconds, parts, summary = timed_sweep(session, settings, now)
            rows.append((label, seconds, parts, summary))
            print(f"{label}: {seconds:.1f} s", file=sys.stderr)
    finally:
        with Session(engine) as session:
            clean_up(session)
        engine.dispose()

    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"\n{args.scale} scale on PostgreSQL; target {TARGET_S:.0f} s; "
        f"load average {load} on {os.cpu_count()} CPUs"
    )
    for label, seconds, parts, summary in rows:
        detail = ", ".join(f"{name} {value:.1f} s" for name, value in parts.items())
        print(f"{label:<15} {seconds:6.1f} s  ({seconds / TARGET_S:.0%} of target)  [{detail}]  {summary}")


if __name__ == "__main__":
    main()
