"""Tap ingest in one process, without HTTP: where the server's time per tap goes (issue #11).

Builds a branch of ``--members`` members with bound cards, an event in progress at one venue and
``--kiosks`` enrolled kiosks, through the real services, then pre-signs every batch (first taps
and, after ten minutes, sign-outs, so every tap is accepted and reaches attendance). Each batch
is ingested in its own unit of work exactly as ``POST /api/v1/taps`` does. Prints taps per
second, SQL statements per tap and, with ``--profile``, the top of a cProfile of CPU time (``SORT``
chooses the order, default cumulative; ``CALLERS=<regex>`` also shows who calls the functions it
matches). ``make bench`` measures the same path over HTTP; this one isolates the service.

Run: ``.venv/bin/python benchmarks/ingest_inprocess.py [--pg] [--batch 50] [--profile]``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import secrets
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import Engine, event

from schemas.messages import (
    CardApplication,
    CardFacts,
    EnrollRequest,
    ReaderBackend,
    ReaderInfo,
    SignedEnvelope,
    TapBatch,
    TapMode,
    TapPayload,
    b64url_encode,
)
from server.caller import CLI_CALLER
from server.cards.service import bind_card
from server.db import make_engine, unit_of_work
from server.events.service import add_event
from server.evidence.sealing import EvidenceSealer
from server.keyring import Keyring
from server.kiosks.service import add_kiosk, enroll_kiosk
from server.migrate import migrate
from server.orgs.service import add_member, add_organisation
from server.taps.service import ingest_batch
from server.venues.service import add_venue
from server.vocabulary import EventKind, MemberCategory, OrgKind

PG_ADMIN = os.environ.get("ECARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
START = datetime(2026, 7, 1, 1, 0, tzinfo=UTC)


def _card(n: int) -> CardFacts:
    return CardFacts(
        uid=f"04{n:012X}",
        application=CardApplication.TUNION,
        card_no=f"31043930{n:011d}",
        city_code="3930",
    )


def build(
    engine: Engine, keyring: Keyring, *, members: int, kiosks: int
) -> list[tuple[str, Ed25519PrivateKey]]:
    now = START - timedelta(days=30)
    keys: list[tuple[str, Ed25519PrivateKey]] = []
    with unit_of_work(engine) as session:
        committee = add_organisation(
            session, name="基层党委", kind=OrgKind.BASIC_COMMITTEE, parent_id=None, now=now
        )
        assert committee.id is not None
        branch = add_organisation(
            session, name="第一党支部", kind=OrgKind.BRANCH, parent_id=committee.id, now=now
        )
        assert branch.id is not None
        for n in range(members):
            member = add_member(
                session,
                name=f"党员{n:04d}",
                org_id=branch.id,
                category=MemberCategory.FULL,
                joined_org_at=None,
                now=now,
            )
            assert member.id is not None
            card = _card(n)
            bind_card(
                session, keyring=keyring, member_id=member.id, card_no=card.card_no, uid=card.uid, now=now
            )
        venue = add_venue(session, name="党群活动中心", org_id=committee.id, now=now)
        assert venue.id is not None
        add_event(
            session,
            title="七一主题党日",
            org_id=branch.id,
            venue_id=venue.id,
            kind=EventKind.THEME_DAY,
            start_at=START,
            end_at=START + timedelta(hours=3),
            now=now,
            caller=CLI_CALLER,
        )
        for k in range(kiosks):
            issued = add_kiosk(
                session,
                keyring=keyring,
                name=f"{k + 1}号机",
                venue_id=venue.id,
                now=now,
                code_ttl=timedelta(hours=1),
                caller=CLI_CALLER,
            )
            private = Ed25519PrivateKey.generate()
            public = b64url_encode(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
            enroll_kiosk(
                session,
                keyring=keyring,
                request=EnrollRequest(code=issued.code, public_key=public, agent_version="bench"),
                now=now,
            )
            keys.append((issued.kiosk.id, private))
    return keys


def signed_batches(
    keys: list[tuple[str, Ed25519PrivateKey]], *, members: int, batch: int
) -> list[list[SignedEnvelope]]:
    """Every member taps in (at START+5 min) and out (+20 min later), spread over the kiosks."""
    from schemas.messages import key_id

    per_kiosk: dict[str, list[SignedEnvelope]] = {kiosk_id: [] for kiosk_id, _ in keys}
    seqs: Counter[str] = Counter()
    for round_offset in (timedelta(minutes=5), timedelta(minutes=25)):
        for n in range(members):
            kiosk_id, private = keys[n % len(keys)]
            seqs[kiosk_id] += 1
            payload = TapPayload(
                kiosk_id=kiosk_id,
                seq=seqs[kiosk_id],
                occurred_at=START + round_offset + timedelta(milliseconds=n),
                card=_card(n),
                mode=TapMode.CHECKIN,
                reader=ReaderInfo(backend=ReaderBackend.SCRIPTED, name="bench"),
            )
            raw = payload.to_bytes()
            public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            per_kiosk[kiosk_id].append(
                SignedEnvelope(
                    kid=key_id(public), payload=b64url_encode(raw), sig=b64url_encode(private.sign(raw))
                )
            )
    batches: list[list[SignedEnvelope]] = []
    for envelopes in per_kiosk.values():
        batches.extend(envelopes[i : i + batch] for i in range(0, len(envelopes), batch))
    return batches


def run(database_url: str, *, members: int, kiosks: int, batch: int, profile: bool) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    keyring = Keyring(secrets.token_bytes(32))
    sealer = EvidenceSealer(secrets.token_bytes(32))
    keys = build(engine, keyring, members=members, kiosks=kiosks)
    batches = signed_batches(keys, members=members, batch=batch)
    statements: Counter[str] = Counter()
    shown: Counter[str] = Counter()

    waited: Counter[str] = Counter()
    started_at: dict[int, float] = {}

    def count(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements[statement.split(None, 1)[0].upper()] += 1
        started_at[id(conn)] = time.perf_counter()

    def timed(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        waited[" ".join(statement.split()[:3])] += time.perf_counter() - started_at.pop(id(conn), 0.0)
        if os.environ.get("SHOW_SQL"):
            shown[statement[:150]] += 1

    event.listen(engine, "before_cursor_execute", count)
    event.listen(engine, "after_cursor_execute", timed)
    received_at = START + timedelta(minutes=40)
    statuses: Counter[str] = Counter()
    # By CPU time, not wall time: the waits on the database are not the Python to cut.
    profiler = cProfile.Profile(time.process_time) if profile else None
    started = time.perf_counter()
    cpu_started = time.process_time()
    if profiler is not None:
        profiler.enable()
    for envelopes in batches:
        with unit_of_work(engine) as session:
            receipt = ingest_batch(
                session,
                TapBatch(envelopes=envelopes),
                keyring=keyring,
                received_at=received_at,
                max_clock_skew=timedelta(minutes=10),
                sealer=sealer,
            )
        statuses.update(r.status.value for r in receipt.receipts)
    if profiler is not None:
        profiler.disable()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    taps = sum(len(b) for b in batches)
    print(
        f"{database_url.split(':')[0]} batch={batch}: {taps} taps in {elapsed:.2f} s = "
        f"{taps / elapsed:.0f} taps/s, "
        f"CPU {cpu / taps * 1000:.2f} ms/tap; receipts {dict(statuses)}"
    )
    for text, n in shown.most_common(25):
        print(f"{n:6d}  {text}")
    print(
        "time in the database driver per tap (ms): "
        + ", ".join(f"{k} {v / taps * 1000:.3f}" for k, v in waited.most_common(6))
    )
    print("statements per tap: " + ", ".join(f"{k} {v / taps:.2f}" for k, v in statements.most_common()))
    if profiler is not None:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).sort_stats(os.environ.get("SORT", "cumulative"))
        stats.print_stats(45)
        if callers := os.environ.get("CALLERS"):  # who calls the functions matching this regex
            stats.print_callers(callers)
        print(out.getvalue())
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", action="store_true", help="PostgreSQL (a new database) instead of SQLite")
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--kiosks", type=int, default=10)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.pg:
        name = f"ecard_ingest_{secrets.token_hex(4)}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            run(
                PG_ADMIN.rsplit("/", 1)[0] + f"/{name}",
                members=args.members,
                kiosks=args.kiosks,
                batch=args.batch,
                profile=args.profile,
            )
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(
                f"sqlite:///{Path(tmp) / 'ingest.sqlite'}",
                members=args.members,
                kiosks=args.kiosks,
                batch=args.batch,
                profile=args.profile,
            )


if __name__ == "__main__":
    main()
