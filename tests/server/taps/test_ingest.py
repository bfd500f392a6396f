"""Tap ingest, through the service, on SQLite and PostgreSQL: every receipt code, idempotency and
what gets stored."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine, inspect, text
from sqlmodel import Session, col, func, select

from schemas.messages import BatchReceipt, SignedEnvelope, TapMode, TapStatus, b64url_encode
from server.caller import CLI_CALLER
from server.db import unit_of_work
from server.keyring import Keyring
from server.kiosks.service import revoke_kiosk
from server.records.attendance import Attendance
from server.records.kiosks import Kiosk
from server.records.taps import Tap
from server.venues.service import set_uid_only_reads
from tests.server.factories import (
    EVENT_END,
    EVENT_START,
    LI_CARD,
    STRANGER_CARD,
    ZHANG_CARD,
    ZHAO_CARD,
    World,
    enrol_second_kiosk,
    upload,
)
from tests.server.signing import KioskKeys, card

RECEIVED = EVENT_START + timedelta(minutes=5)


def receipt_codes(receipts: BatchReceipt) -> list[tuple[str, str | None]]:
    return [(r.status.value, r.code) for r in receipts.receipts]


def tap_rows(engine: Engine) -> list[Tap]:
    with Session(engine) as session:
        return list(session.exec(select(Tap).order_by(col(Tap.id))).all())


def attendance_of(engine: Engine, world: World, name: str) -> Attendance | None:
    with Session(engine) as session:
        return session.exec(
            select(Attendance).where(
                Attendance.event_id == world.event_id, Attendance.member_id == world.members[name]
            )
        ).first()


class TestAccepted:
    def test_first_tap_checks_the_member_in(self, engine: Engine, keyring: Keyring, world: World) -> None:
        """A bound card tapped in the window is accepted with the masked name and event title."""
        at = EVENT_START - timedelta(minutes=10)
        result = upload(
            engine, keyring, [world.keys.seal(world.payload(ZHANG_CARD, at=at))], received_at=RECEIVED
        )

        (receipt,) = result.receipts
        assert receipt.status == TapStatus.ACCEPTED
        assert receipt.code is None
        assert receipt.seq == 1
        assert receipt.display.member_name == "张*明"
        assert receipt.display.event_title == "三月主题党日"
        assert receipt.display.message == "签到成功"
        assert result.server_time == RECEIVED
        attendance = attendance_of(engine, world, "张三明")
        assert attendance is not None
        assert attendance.first_tap_at == at
        assert attendance.last_tap_at == at
        assert attendance.tap_count == 1

    def test_later_and_earlier_taps_move_last_and_first(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """Repeat taps update last/first by tap time, even when an offline backlog arrives late."""
        middle, late, early = (EVENT_START + timedelta(minutes=m) for m in (0, 30, -20))
        for at in (middle, late, early):
            result = upload(
                engine, keyring, [world.keys.seal(world.payload(ZHANG_CARD, at=at))], received_at=EVENT_END
            )

        assert result.receipts[0].status == TapStatus.ACCEPTED
        assert result.receipts[0].display.message == "已签到，无需重复刷卡"
        attendance = attendance_of(engine, world, "张三明")
        assert attendance is not None
        assert (attendance.first_tap_at, attendance.last_tap_at, attendance.tap_count) == (early, late, 3)

    def test_uid_only_binding_matches_a_card_that_also_reports_its_number(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """李四's card was bound by UID; a T-Union read (number + UID) still finds her."""
        result = upload(
            engine, keyring, [world.keys.seal(world.payload(LI_CARD, at=EVENT_START))], received_at=RECEIVED
        )
        assert receipt_codes(result) == [("accepted", None)]
        assert result.receipts[0].display.member_name == "李*"

    def test_uid_reader_finds_a_card_bound_by_number_and_uid(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """A UID-only reader (no card number) matches a binding that recorded the UID, but a card
        bound by its number is only checked by UID where the venue accepts such reads; elsewhere
        a UID-only read is a possible magic-UID copy (``card_downgrade``)."""
        uid_only = card(None, ZHANG_CARD.uid)
        refused = upload(
            engine, keyring, [world.keys.seal(world.payload(uid_only, at=EVENT_START))], received_at=RECEIVED
        )
        assert receipt_codes(refused) == [("rejected", "card_downgrade")]
        with unit_of_work(engine) as session:
            set_uid_only_reads(session, venue_id=world.venue_id, accept=True, caller=CLI_CALLER, now=RECEIVED)
        result = upload(
            engine, keyring, [world.keys.seal(world.payload(uid_only, at=EVENT_START))], received_at=RECEIVED
        )
        assert receipt_codes(result) == [("accepted", None)]

    def test_member_of_another_branch_is_accepted(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """Mobile members attend elsewhere: the tap counts (the sheet lists them as guests)."""
        result = upload(
            engine, keyring, [world.keys.seal(world.payload(ZHAO_CARD, at=EVENT_START))], received_at=RECEIVED
        )
        assert receipt_codes(result) == [("accepted", None)]
        assert attendance_of(engine, world, "赵六") is not None

    def test_kiosk_progress_is_recorded(self, engine: Engine, keyring: Keyring, world: World) -> None:
        """The kiosk's last seq and last contact follow its uploads."""
        envelopes = [world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START, seq=s)) for s in (3, 7, 5)]
        upload(engine, keyring, envelopes, received_at=RECEIVED)
        with Session(engine) as session:
            kiosk = session.get(Kiosk, world.kiosk_id)
            assert kiosk is not None
            assert kiosk.last_seq == 7
            assert kiosk.last_seen_at == RECEIVED


class TestIdempotency:
    def test_replay_returns_the_original_receipt_and_stores_nothing(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """The same envelope again is a duplicate carrying the first answer; no row, no count."""
        envelope = world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START))
        first = upload(engine, keyring, [envelope], received_at=RECEIVED)
        rows_before = len(tap_rows(engine))
        again = upload(engine, keyring, [envelope], received_at=RECEIVED + timedelta(minutes=1))

        (replayed,) = again.receipts
        assert replayed.status == TapStatus.DUPLICATE
        assert replayed.display == first.receipts[0].display
        assert replayed.seq == 1
        assert len(tap_rows(engine)) == rows_before
        attendance = attendance_of(engine, world, "张三明")
        assert attendance is not None
        assert attendance.tap_count == 1

    def test_replay_of_a_rejected_tap_repeats_its_code(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """A duplicate of a rejected tap says why it was rejected, still without a new row."""
        envelope = world.keys.seal(world.payload(STRANGER_CARD, at=EVENT_START))
        upload(engine, keyring, [envelope], received_at=RECEIVED)
        again = upload(engine, keyring, [envelope], received_at=RECEIVED)
        assert receipt_codes(again) == [("duplicate", "unknown_card")]
        assert len(tap_rows(engine)) == 1

    def test_same_envelope_twice_in_one_batch(self, engine: Engine, keyring: Keyring, world: World) -> None:
        """Within one batch the second copy is already a duplicate."""
        envelope = world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START))
        result = upload(engine, keyring, [envelope, envelope], received_at=RECEIVED)
        assert receipt_codes(result) == [("accepted", None), ("duplicate", None)]
        assert [r.index for r in result.receipts] == [0, 1]

    def test_same_seq_with_other_bytes_is_a_conflict_stored_on_its_own(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """seq_conflict: the original stays, the conflicting tap is stored as a rejected row."""
        upload(
            engine,
            keyring,
            [world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START, seq=9))],
            received_at=RECEIVED,
        )
        other = world.keys.seal(world.payload(LI_CARD, at=EVENT_START, seq=9))
        result = upload(engine, keyring, [other], received_at=RECEIVED)

        assert receipt_codes(result) == [("rejected", "seq_conflict")]
        assert result.receipts[0].display.message == "刷卡记录编号冲突，请联系管理员"
        rows = tap_rows(engine)
        assert [(r.outcome.value, r.code) for r in rows] == [("accepted", None), ("rejected", "seq_conflict")]
        assert attendance_of(engine, world, "李四") is None
        # The conflicting bytes sent again get their own earlier answer back.
        assert receipt_codes(upload(engine, keyring, [other], received_at=RECEIVED)) == [
            ("duplicate", "seq_conflict")
        ]
        assert len(tap_rows(engine)) == 2

    def test_concurrent_uploads_of_one_tap_store_it_once(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """Two requests racing with the same envelope: one accepted, one duplicate, one row."""
        envelope = world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START))
        results: list[BatchReceipt] = []
        start = threading.Barrier(2)

        def send() -> None:
            start.wait()
            results.append(upload(engine, keyring, [envelope], received_at=RECEIVED))

        threads = [threading.Thread(target=send) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(r.receipts[0].status.value for r in results) == ["accepted", "duplicate"]
        assert len(tap_rows(engine)) == 1

    def test_concurrent_first_taps_at_two_kiosks_count_twice(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """One member's simultaneous taps at two kiosks both count; attendance stays one row."""
        second_kiosk, second_keys = enrol_second_kiosk(engine, keyring, world, now=RECEIVED)
        envelopes = [
            world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START)),
            second_keys.seal(
                world.payload(ZHANG_CARD, at=EVENT_START + timedelta(seconds=1), seq=1).model_copy(
                    update={"kiosk_id": second_kiosk}
                )
            ),
        ]
        results: list[BatchReceipt] = []
        start = threading.Barrier(2)

        def send(envelope: SignedEnvelope) -> None:
            start.wait()
            results.append(upload(engine, keyring, [envelope], received_at=RECEIVED))

        threads = [threading.Thread(target=send, args=(e,)) for e in envelopes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert [r.receipts[0].status.value for r in results] == ["accepted", "accepted"]
        attendance = attendance_of(engine, world, "张三明")
        assert attendance is not None
        assert attendance.tap_count == 2


class TestRejected:
    def test_unknown_kiosk(self, engine: Engine, keyring: Keyring, world: World) -> None:
        """A key the server never enrolled: rejected, and nothing stored (anyone could send it)."""
        stranger = KioskKeys()
        result = upload(
            engine, keyring, [stranger.seal(world.payload(ZHANG_CARD, at=EVENT_START))], received_at=RECEIVED
        )
        assert receipt_codes(result) == [("rejected", "unknown_kiosk")]
        assert result.receipts[0].seq is None
        assert tap_rows(engine) == []

    def test_signature_by_another_key(self, engine: Engine, keyring: Keyring, world: World) -> None:
        """Signed by a different key under the kiosk's kid: bad_signature, payload not trusted,
        and nothing stored (knowing a kid is no credential)."""
        forged = KioskKeys().sign_bytes(
            world.payload(ZHANG_CARD, at=EVENT_START).to_bytes(), kid=world.keys.kid
        )
        result = upload(engine, keyring, [forged], received_at=RECEIVED)
        assert receipt_codes(result) == [("rejected", "bad_signature")]
        assert tap_rows(engine) == []
        assert attendance_of(engine, world, "张三明") is None

    def test_payload_altered_after_signing(self, engine: Engine, keyring: Keyring, world: World) -> None:
        """Changing one byte of the signed payload breaks the signature."""
        envelope = world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START))
        tampered_bytes = envelope.payload_bytes().replace(b'"seq":1', b'"seq":2')
        tampered = envelope.model_copy(update={"payload": b64url_encode(tampered_bytes)})
        assert receipt_codes(upload(engine, keyring, [tampered], received_at=RECEIVED)) == [
            ("rejected", "bad_signature")
        ]

    @pytest.mark.parametrize(
        "payload",
        [b"not json", b'{"schema_version": 1}', b"[]"],
        ids=["not-json", "missing-fields", "wrong-shape"],
    )
    def test_signed_but_unparsable(
        self, engine: Engine, keyring: Keyring, world: World, payload: bytes
    ) -> None:
        """Correctly signed bytes that are not a TapPayload: malformed."""
        result = upload(engine, keyring, [world.keys.sign_bytes(payload)], received_at=RECEIVED)
        assert receipt_codes(result) == [("rejected", "malformed")]

    def test_signed_payload_with_an_extra_field(self, engine: Engine, keyring: Keyring, world: World) -> None:
        """The contract forbids unknown fields, so an extended payload is malformed, not half-read."""
        raw = world.payload(ZHANG_CARD, at=EVENT_START).to_bytes().replace(b"{", b'{"extra":1,', 1)
        result = upload(engine, keyring, [world.keys.sign_bytes(raw)], received_at=RECEIVED)
        assert receipt_codes(result) == [("rejected", "malformed")]

    def test_payload_naming_another_kiosk(self, engine: Engine, keyring: Keyring, world: World) -> None:
        """A kiosk's key vouching for another kiosk id: kiosk_mismatch."""
        payload = world.payload(ZHANG_CARD, at=EVENT_START).model_copy(update={"kiosk_id": "kiosk-other"})
        assert receipt_codes(upload(engine, keyring, [world.keys.seal(payload)], received_at=RECEIVED)) == [
            ("rejected", "kiosk_mismatch")
        ]

    def test_revoked_kiosk(self, engine: Engine, keyring: Keyring, world: World) -> None:
        """After revocation the kiosk's taps are stored but rejected."""
        with unit_of_work(engine) as session:
            revoke_kiosk(session, kiosk_id=world.kiosk_id, now=RECEIVED, caller=CLI_CALLER)
        result = upload(
            engine,
            keyring,
            [world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START))],
            received_at=RECEIVED,
        )
        assert receipt_codes(result) == [("rejected", "revoked_kiosk")]
        assert result.receipts[0].display.message == "终端已停用，请联系管理员"
        assert attendance_of(engine, world, "张三明") is None

    def test_unknown_card_is_stored_as_rejected(self, engine: Engine, keyring: Keyring, world: World) -> None:
        """An unbound card: rejected unknown_card, kept as a row with the card digests only."""
        result = upload(
            engine,
            keyring,
            [world.keys.seal(world.payload(STRANGER_CARD, at=EVENT_START))],
            received_at=RECEIVED,
        )
        (receipt,) = result.receipts
        assert (receipt.status, receipt.code) == (TapStatus.REJECTED, "unknown_card")
        assert receipt.display.message == "未登记的卡，请联系组织委员"
        assert receipt.display.member_name is None
        (row,) = tap_rows(engine)
        assert row.code == "unknown_card"
        assert row.member_id is None
        assert row.card_no_hmac is not None
        assert row.uid_hmac is not None

    def test_cloned_uid_does_not_match_a_card_bound_by_number(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """张三明's UID on a card with another number is not 张三明: a clone (server.cards.checks)."""
        clone = card(STRANGER_CARD.card_no, ZHANG_CARD.uid)
        result = upload(
            engine, keyring, [world.keys.seal(world.payload(clone, at=EVENT_START))], received_at=RECEIVED
        )
        assert receipt_codes(result) == [("rejected", "card_mismatch")]

    def test_no_event_outside_every_window(self, engine: Engine, keyring: Keyring, world: World) -> None:
        """Before the window opens and from its close on: no_event, and the row names no member."""
        envelopes = [
            world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START - timedelta(minutes=31))),
            world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_END)),
        ]
        result = upload(engine, keyring, envelopes, received_at=EVENT_END + timedelta(minutes=1))
        assert receipt_codes(result) == [("rejected", "no_event")] * 2
        assert result.receipts[0].display.message == "当前没有可签到的活动"
        assert result.receipts[0].display.member_name == "张*明"
        assert all(row.member_id is None for row in tap_rows(engine))

    def test_window_opens_thirty_minutes_before_the_start(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """Exactly 30 minutes early is inside the default window."""
        at = EVENT_START - timedelta(minutes=30)
        result = upload(
            engine, keyring, [world.keys.seal(world.payload(ZHANG_CARD, at=at))], received_at=RECEIVED
        )
        assert receipt_codes(result) == [("accepted", None)]

    def test_transfer_in_by_a_member_who_already_belongs_here(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """A transfer-in tap by a member of the venue's organisation has nothing to file (the
        transfer workflow itself is tested in tests/server/transfers)."""
        payload = world.payload(ZHANG_CARD, at=EVENT_START, mode=TapMode.TRANSFER_IN)
        assert receipt_codes(upload(engine, keyring, [world.keys.seal(payload)], received_at=RECEIVED)) == [
            ("rejected", "already_member")
        ]

    def test_tap_from_the_future(self, engine: Engine, keyring: Keyring, world: World) -> None:
        """A kiosk clock far ahead of the server is refused (a slightly fast one is fine)."""
        slightly_fast = world.keys.seal(world.payload(ZHANG_CARD, at=RECEIVED + timedelta(minutes=9)))
        far_ahead = world.keys.seal(world.payload(ZHANG_CARD, at=RECEIVED + timedelta(minutes=11)))
        result = upload(engine, keyring, [slightly_fast, far_ahead], received_at=RECEIVED)
        assert receipt_codes(result) == [("accepted", None), ("rejected", "clock_skew")]

    def test_mixed_batch_answers_every_envelope_in_order(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """One bad envelope does not spoil the batch: each gets its own receipt, by index."""
        envelopes = [
            world.keys.seal(world.payload(STRANGER_CARD, at=EVENT_START)),
            KioskKeys().seal(world.payload(ZHANG_CARD, at=EVENT_START)),
            world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START)),
        ]
        result = upload(engine, keyring, envelopes, received_at=RECEIVED)
        assert receipt_codes(result) == [
            ("rejected", "unknown_card"),
            ("rejected", "unknown_kiosk"),
            ("accepted", None),
        ]
        assert [r.index for r in result.receipts] == [0, 1, 2]


class TestStorage:
    def test_no_raw_card_identifier_is_stored_anywhere(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """Neither a card number nor a UID appears in any column of any table, masked or not."""
        cards = [ZHANG_CARD, LI_CARD, STRANGER_CARD]
        upload(
            engine,
            keyring,
            [world.keys.seal(world.payload(c, at=EVENT_START)) for c in cards],
            received_at=RECEIVED,
        )
        secrets = {c.card_no for c in cards if c.card_no} | {c.uid for c in cards}
        with engine.connect() as connection:
            for table in inspect(connection).get_table_names():
                for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                    dumped = " ".join(str(value) for value in row)
                    leaked = [s for s in secrets if s in dumped or s.lower() in dumped]
                    assert not leaked, f"{table} holds a raw card identifier"

    def test_logs_show_masked_cards_only(
        self, engine: Engine, keyring: Keyring, world: World, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Ingest logs name cards by their masked form, never the raw number or UID."""
        caplog.set_level(logging.DEBUG)
        cards = [ZHANG_CARD, STRANGER_CARD]
        upload(
            engine,
            keyring,
            [world.keys.seal(world.payload(c, at=EVENT_START)) for c in cards],
            received_at=RECEIVED,
        )
        assert "3104********8901" in caplog.text
        for c in cards:
            assert c.uid not in caplog.text
            assert c.card_no is not None
            assert c.card_no not in caplog.text

    def test_every_envelope_but_duplicates_leaves_a_row(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """Rows count accepted and rejected taps; duplicates add none."""
        accepted = world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START))
        upload(
            engine,
            keyring,
            [accepted, world.keys.seal(world.payload(STRANGER_CARD, at=EVENT_START))],
            received_at=RECEIVED,
        )
        upload(engine, keyring, [accepted], received_at=RECEIVED)
        with Session(engine) as session:
            outcomes = session.exec(select(Tap.outcome, func.count()).group_by(col(Tap.outcome))).all()
        assert dict(outcomes) == {"accepted": 1, "rejected": 1}
