"""``ecard admin audit verify`` names each row edited, deleted or inserted behind the services'
back: taps (their signed bytes, chain and member), attendance rows and audit entries."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, update
from sqlmodel import Session, col, select

from server.db import unit_of_work
from server.evidence.sealing import tap_chain_hash
from server.records.attendance import Attendance
from server.records.audit import AuditEntry
from server.records.evidence import TapEvidence
from server.records.taps import Tap
from server.vocabulary import AttendanceSource, TapOutcome
from tests.server.evidence.conftest import Scene, evidence_key_file
from tests.server.factories import EVENT_START

Tamper = Callable[[Session, Scene], tuple[str, int]]


def _problems(report: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(p["table"], p["row_id"], p["code"]) for p in report["problems"]}


class TestCleanDatabase:
    def test_a_clean_database_verifies(self, scene: Scene, admin: Any, settings: Any) -> None:
        """Every signature checks out again, the chains hold, every attendance row rests on its
        taps or an audited manual entry: exit 0."""
        code, report = admin("audit", "verify")
        assert code == 0, report
        assert report["ok"] is True
        counts = report["counts"]
        assert counts["taps"] == 4
        assert counts["signatures_verified"] == 4
        assert counts["kiosk_chains"] == 1
        assert counts["attendance"] == 3
        assert counts["attendance_on_taps"] == 2
        assert counts["attendance_manual"] == 1
        assert counts["audit_entries"] > 0
        assert stat.S_IMODE(os.stat(evidence_key_file(settings)).st_mode) == 0o600

    def test_the_text_report_reads_in_both_languages(self, scene: Scene, admin: Any) -> None:
        code, text = admin("audit", "verify", as_json=False)
        assert code == 0
        assert "存证核验 Evidence check: 通过 PASSED" in text
        assert "4 个签名复核通过 signatures verified" in text

    def test_no_clear_card_identifier_is_stored(self, scene: Scene, engine: Engine) -> None:
        """The sealed bytes are ciphertext: the card number is nowhere in the evidence rows."""
        with Session(engine) as session:
            blobs = session.exec(select(TapEvidence.sealed)).all()
        assert blobs
        assert all(blob is not None and b"3104393000000018901" not in blob for blob in blobs)

    def test_scope_options_narrow_the_check(self, scene: Scene, admin: Any) -> None:
        code, report = admin("audit", "verify", "--event", str(scene.world.event_id))
        assert code == 0
        assert report["counts"]["attendance"] == 3
        code, report = admin("audit", "verify", "--org", str(scene.world.other_branch_id))
        assert code == 0
        assert report["counts"]["attendance"] == 0
        code, report = admin("audit", "verify", "--period", "2024")
        assert code == 0
        assert report["counts"]["signatures_verified"] == 0
        code, report = admin("audit", "verify", "--org", "99999")
        assert code == 1
        assert report["error"] == "organisation_not_found"


def tap_time(session: Session, scene: Scene) -> tuple[str, int]:
    tap_id = scene.taps["li_in"]
    session.exec(
        update(Tap).where(col(Tap.id) == tap_id).values(occurred_at=EVENT_START - timedelta(minutes=30))
    )
    return "payload_mismatch", tap_id


def tap_sealed_blob(session: Session, scene: Scene) -> tuple[str, int]:
    # Another row's sealed bytes moved onto this one (its own key, a valid AES-GCM blob).
    other = session.get(TapEvidence, scene.taps["zhang_in"])
    assert other is not None
    tap_id = scene.taps["li_in"]
    session.exec(
        update(TapEvidence)
        .where(col(TapEvidence.tap_id) == tap_id)
        .values(sealed=other.sealed, nonce=other.nonce)
    )
    return "sealed_unreadable", tap_id


def tap_member(session: Session, scene: Scene) -> tuple[str, int]:
    tap_id = scene.taps["li_in"]
    session.exec(update(Tap).where(col(Tap.id) == tap_id).values(member_id=scene.world.members["王五"]))
    return "member_mismatch", tap_id


def tap_deleted(session: Session, scene: Scene) -> tuple[str, int]:
    # The stranger's tap, in the middle of the kiosk's chain (no attendance refers to it).
    gone = scene.taps["stranger"]
    session.exec(delete(TapEvidence).where(col(TapEvidence.tap_id) == gone))
    session.exec(delete(Tap).where(col(Tap.id) == gone))
    return "chain_broken", scene.taps["li_in"]


def tap_forged(session: Session, scene: Scene) -> tuple[str, int]:
    # A forger who knows the chain's hash links the row properly; they have no kiosk key.
    head = session.get(TapEvidence, scene.taps["zhang_out"])
    template = session.get(Tap, scene.taps["zhang_out"])
    assert head is not None
    assert template is not None
    forged = Tap(
        received_at=template.received_at + timedelta(minutes=1),
        kid=template.kid,
        kiosk_id=template.kiosk_id,
        seq=99,
        claimed_seq=99,
        payload_digest=secrets.token_hex(32),
        occurred_at=template.occurred_at,
        mode=template.mode,
        uid_hmac=template.uid_hmac,
        member_id=scene.world.members["赵六"],
        event_id=scene.world.event_id,
        outcome=TapOutcome.ACCEPTED,
        display_message="签到成功",
    )
    session.add(forged)
    session.flush()
    assert forged.id is not None
    assert forged.kiosk_id is not None
    signature = secrets.token_urlsafe(64)[:86]
    session.add(
        TapEvidence(
            tap_id=forged.id,
            kiosk_id=forged.kiosk_id,
            signature=signature,
            nonce=secrets.token_bytes(12),
            sealed=secrets.token_bytes(80),
            prev_hash=head.chain_hash,
            chain_hash=tap_chain_hash(
                head.chain_hash,
                tap_id=forged.id,
                received_at=forged.received_at,
                kiosk_id=forged.kiosk_id,
                seq=forged.seq,
                kid=forged.kid,
                payload_digest=forged.payload_digest,
                signature=signature,
            ),
        )
    )
    return "sealed_unreadable", forged.id


def attendance_time(session: Session, scene: Scene) -> tuple[str, int]:
    row_id = scene.attendance["李四"]
    session.exec(
        update(Attendance)
        .where(col(Attendance.id) == row_id)
        .values(first_tap_at=EVENT_START - timedelta(minutes=20))
    )
    return "time_mismatch", row_id


def attendance_without_taps(session: Session, scene: Scene) -> tuple[str, int]:
    row = Attendance(
        event_id=scene.world.event_id,
        member_id=scene.world.members["赵六"],
        first_tap_at=EVENT_START,
        last_tap_at=EVENT_START,
        tap_count=1,
        source=AttendanceSource.TAP,
    )
    session.add(row)
    session.flush()
    assert row.id is not None
    return "no_basis", row.id


def audit_reason(session: Session, scene: Scene) -> tuple[str, int]:
    entry = session.exec(select(AuditEntry).where(AuditEntry.action == "attendance.manual")).one()
    assert entry.id is not None
    session.exec(update(AuditEntry).where(col(AuditEntry.id) == entry.id).values(reason="另有安排"))
    return "entry_altered", entry.id


def audit_deleted(session: Session, scene: Scene) -> tuple[str, int]:
    ids = session.exec(select(AuditEntry.id).order_by(col(AuditEntry.id))).all()
    assert len(ids) >= 3
    middle, after = ids[len(ids) // 2], ids[len(ids) // 2 + 1]
    session.exec(delete(AuditEntry).where(col(AuditEntry.id) == middle))
    assert after is not None
    return "prev_hash_mismatch", after


TAMPERING: dict[str, tuple[str, Tamper]] = {
    "tap occurred_at": ("tap", tap_time),
    "tap sealed blob": ("tap", tap_sealed_blob),
    "tap member": ("tap", tap_member),
    "tap deleted mid-chain": ("tap", tap_deleted),
    "tap forged": ("tap", tap_forged),
    "attendance time": ("attendance", attendance_time),
    "attendance without taps": ("attendance", attendance_without_taps),
    "audit reason": ("audit_entry", audit_reason),
    "audit entry deleted": ("audit_entry", audit_deleted),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_each_edit_is_named(case: str, scene: Scene, engine: Engine, admin: Any) -> None:
    """An edit, deletion or insertion made in SQL makes the check fail (exit 1), naming the row."""
    table, tamper = TAMPERING[case]
    with unit_of_work(engine) as session:
        code, row_id = tamper(session, scene)
    exit_code, report = admin("audit", "verify")
    assert exit_code == 1, report
    assert report["ok"] is False
    assert (table, str(row_id), code) in _problems(report), report["problems"]


def test_an_attendance_row_on_a_changed_tap_is_named_too(scene: Scene, engine: Engine, admin: Any) -> None:
    """A tap handed to another member breaks the attendance row that rests on it."""
    with unit_of_work(engine) as session:
        tap_member(session, scene)
    _, report = admin("audit", "verify")
    assert ("attendance", str(scene.attendance["李四"]), "tap_not_counted") in _problems(report)


def test_the_text_report_names_the_broken_row(scene: Scene, engine: Engine, admin: Any) -> None:
    with unit_of_work(engine) as session:
        _, tap_id = tap_time(session, scene)
    exit_code, text = admin("audit", "verify", as_json=False)
    assert exit_code == 1
    assert "未通过 FAILED" in text
    assert f"✗ tap #{tap_id}  payload_mismatch" in text


def test_a_purged_tap_keeps_its_link_but_not_its_bytes(scene: Scene, engine: Engine, admin: Any) -> None:
    """After the retention period an unmatched tap's sealed bytes go with its card digests; the
    check counts it as purged and its chain still holds."""
    from server.attendance.unmatched import purge_unmatched_taps

    with unit_of_work(engine) as session:
        purged = purge_unmatched_taps(
            session, now=EVENT_START + timedelta(days=60), retention=timedelta(days=30)
        )
    assert purged == 1
    with Session(engine) as session:
        evidence = session.get(TapEvidence, scene.taps["stranger"])
        assert evidence is not None
        assert evidence.sealed is None
        assert evidence.purged_at is not None
    exit_code, report = admin("audit", "verify")
    assert exit_code == 0, report
    assert report["counts"]["purged"] == 1
    assert report["counts"]["signatures_verified"] == 3


def test_a_manual_entry_on_an_altered_audit_entry_is_named(scene: Scene, engine: Engine, admin: Any) -> None:
    """Rewriting the reason of a 补录's audit entry breaks the entry and the row that rests on it."""
    with unit_of_work(engine) as session:
        audit_reason(session, scene)
    _, report = admin("audit", "verify")
    assert ("attendance", str(scene.attendance["王五"]), "manual_audit_altered") in _problems(report)
