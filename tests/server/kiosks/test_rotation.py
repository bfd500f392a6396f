"""Key rotation (``POST /api/v1/kiosks/rotate-key``) and the key history that keeps taps signed
before a rotation verifiable."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from schemas.messages import EnrollRequest, KeyRotationRequest, KeyRotationResponse, SignedEnvelope
from server.caller import CLI_CALLER
from server.db import unit_of_work
from server.errors import PublicKeyInUse
from server.keyring import Keyring
from server.kiosks.service import enroll_kiosk, issue_enrollment_code, revoke_kiosk
from server.records.audit import AuditEntry
from server.records.kiosks import Kiosk, KioskKey
from tests.server.conftest import FakeClock
from tests.server.factories import EVENT_START, LI_CARD, ZHANG_CARD, World, enrol_second_kiosk, upload
from tests.server.kiosks.messages import heartbeat, rotation
from tests.server.signing import KioskKeys

ROTATE = "/api/v1/kiosks/rotate-key"


def rotate(client: TestClient, request: KeyRotationRequest) -> tuple[int, dict[str, object]]:
    response = client.post(
        ROTATE, content=request.model_dump_json(), headers={"Content-Type": "application/json"}
    )
    return response.status_code, response.json()


def outcomes(
    engine: Engine, keyring: Keyring, envelopes: list[SignedEnvelope]
) -> list[tuple[str, str | None]]:
    receipts = upload(engine, keyring, envelopes, received_at=EVENT_START + timedelta(minutes=5))
    return [(r.status.value, r.code) for r in receipts.receipts]


class TestRotate:
    def test_offline_taps_signed_before_the_rotation_still_ingest(
        self, client: TestClient, engine: Engine, keyring: Keyring, world: World, clock: FakeClock
    ) -> None:
        """Taps 1–2 were stored offline with the old key; after rotating at seq 2 they still count,
        an old-key tap numbered after the rotation is refused, and new-key taps are accepted."""
        stored_offline = [
            world.keys.seal(world.payload(card, at=EVENT_START)) for card in (ZHANG_CARD, LI_CARD)
        ]
        new = KioskKeys()
        status, body = rotate(
            client, rotation(world.keys, new, kiosk_id=world.kiosk_id, last_seq=2, at=clock.now)
        )

        assert status == 200, body
        granted = KeyRotationResponse.model_validate(body)
        assert (granted.kid, granted.previous_kid) == (new.kid, world.keys.kid)
        forged_later = world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START, seq=3))
        with_new_key = new.seal(world.payload(ZHANG_CARD, at=EVENT_START, seq=4))
        assert outcomes(engine, keyring, [*stored_offline, forged_later, with_new_key]) == [
            ("accepted", None),
            ("accepted", None),
            ("rejected", "retired_key"),
            ("accepted", None),
        ]
        with Session(engine) as session:
            kiosk = session.get(Kiosk, world.kiosk_id)
            old = session.get(KioskKey, world.keys.kid)
            audit = session.exec(select(AuditEntry).where(AuditEntry.action == "kiosk.rotate_key")).one()
        assert kiosk is not None
        assert (kiosk.kid, kiosk.public_key) == (new.kid, new.public_b64)
        assert old is not None
        assert (old.retired_at, old.last_seq) == (clock.now, 2)
        assert audit.actor == f"kiosk:{world.kiosk_id}"

    def test_server_keeps_the_higher_of_declared_and_received_seq(
        self, client: TestClient, engine: Engine, keyring: Keyring, world: World, clock: FakeClock
    ) -> None:
        """A kiosk declaring less than the server already received cannot disown those taps."""
        outcomes(engine, keyring, [world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START, seq=5))])
        assert (
            rotate(
                client, rotation(world.keys, KioskKeys(), kiosk_id=world.kiosk_id, last_seq=1, at=clock.now)
            )[0]
            == 200
        )
        with Session(engine) as session:
            old = session.get(KioskKey, world.keys.kid)
        assert old is not None
        assert old.last_seq == 5

    def test_repeating_a_rotation_returns_the_same_answer(
        self, client: TestClient, world: World, clock: FakeClock
    ) -> None:
        """A kiosk whose first answer was lost sends the request again and gets the same result."""
        new = KioskKeys()
        first = rotate(client, rotation(world.keys, new, kiosk_id=world.kiosk_id, last_seq=3, at=clock.now))
        clock.advance(seconds=30)
        again = rotate(client, rotation(world.keys, new, kiosk_id=world.kiosk_id, last_seq=3, at=clock.now))
        assert again[0] == 200
        assert again[1]["kid"] == first[1]["kid"] == new.kid
        other = rotate(
            client, rotation(world.keys, KioskKeys(), kiosk_id=world.kiosk_id, last_seq=3, at=clock.now)
        )
        assert (other[0], other[1]["error"]) == (409, "key_retired")

    def test_new_key_must_prove_possession(self, client: TestClient, world: World, clock: FakeClock) -> None:
        """The new key's signature must be over the same bytes by that very key."""
        request = rotation(
            world.keys, KioskKeys(), kiosk_id=world.kiosk_id, last_seq=0, at=clock.now, proof_by=KioskKeys()
        )
        assert rotate(client, request) == (401, {"error": "bad_signature", "detail": "新密钥的签名无效"})

    def test_refusals(self, client: TestClient, engine: Engine, world: World, clock: FakeClock) -> None:
        """Same key again, a key another kiosk holds, an unknown old key, a revoked kiosk."""
        same = rotation(world.keys, world.keys, kiosk_id=world.kiosk_id, last_seq=0, at=clock.now)
        assert rotate(client, same)[1]["error"] == "bad_public_key"

        stranger = KioskKeys()
        unknown = rotation(stranger, KioskKeys(), kiosk_id=world.kiosk_id, last_seq=0, at=clock.now)
        assert rotate(client, unknown)[1]["error"] == "unknown_kiosk"

        mismatch = rotation(world.keys, KioskKeys(), kiosk_id="kiosk-other", last_seq=0, at=clock.now)
        assert rotate(client, mismatch)[1]["error"] == "kiosk_mismatch"

        with unit_of_work(engine) as session:
            revoke_kiosk(session, kiosk_id=world.kiosk_id, now=clock.now, caller=CLI_CALLER)
        revoked = rotation(world.keys, KioskKeys(), kiosk_id=world.kiosk_id, last_seq=0, at=clock.now)
        status, body = rotate(client, revoked)
        assert (status, body["error"]) == (409, "kiosk_revoked")

    def test_key_of_another_kiosk_cannot_be_taken(
        self, client: TestClient, engine: Engine, keyring: Keyring, world: World, clock: FakeClock
    ) -> None:
        """Rotating onto the key the spare kiosk enrolled with is refused (409 public_key_in_use)."""
        _spare, spare_keys = enrol_second_kiosk(engine, keyring, world, now=clock.now)
        status, body = rotate(
            client, rotation(world.keys, spare_keys, kiosk_id=world.kiosk_id, last_seq=0, at=clock.now)
        )
        assert (status, body["error"]) == (409, "public_key_in_use")

    def test_retired_key_sends_no_heartbeats(
        self, client: TestClient, world: World, clock: FakeClock
    ) -> None:
        """After the rotation a heartbeat signed by the old key is refused as key_retired."""
        new = KioskKeys()
        rotate(client, rotation(world.keys, new, kiosk_id=world.kiosk_id, last_seq=0, at=clock.now))
        old_beat = heartbeat(world.keys, kiosk_id=world.kiosk_id, sent_at=clock.now)
        response = client.post(
            "/api/v1/kiosks/heartbeat",
            content=old_beat.model_dump_json(),
            headers={"Content-Type": "application/json"},
        )
        assert (response.status_code, response.json()["error"]) == (409, "key_retired")
        new_beat = heartbeat(new, kiosk_id=world.kiosk_id, sent_at=clock.now)
        response = client.post(
            "/api/v1/kiosks/heartbeat",
            content=new_beat.model_dump_json(),
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 200


class TestReEnrollment:
    def test_a_new_enrollment_retires_the_old_key_at_the_last_received_seq(
        self, engine: Engine, keyring: Keyring, world: World, clock: FakeClock
    ) -> None:
        """Replaced hardware: the old device's uploaded taps stay verifiable; nothing newer is."""
        outcomes(engine, keyring, [world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START, seq=1))])
        replacement = KioskKeys()
        with unit_of_work(engine) as session:
            issued = issue_enrollment_code(
                session,
                keyring=keyring,
                kiosk_id=world.kiosk_id,
                now=clock.now,
                code_ttl=timedelta(hours=1),
                caller=CLI_CALLER,
            )
            answer = enroll_kiosk(
                session,
                keyring=keyring,
                request=EnrollRequest(code=issued.code, public_key=replacement.public_b64),
                now=clock.now,
            )
        assert answer.first_seq == 2  # the replacement continues after the last received seq
        continued = replacement.seal(world.payload(ZHANG_CARD, at=EVENT_START, seq=answer.first_seq))
        assert outcomes(engine, keyring, [continued]) == [("accepted", None)]
        replay = world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START, seq=1))
        stolen = world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START, seq=3))
        assert outcomes(engine, keyring, [replay, stolen]) == [
            ("duplicate", None),
            ("rejected", "retired_key"),
        ]
        with Session(engine) as session:
            retired = session.get(KioskKey, world.keys.kid)
        assert retired is not None
        assert retired.last_seq == 1

    def test_a_retired_key_cannot_enroll_again(
        self, engine: Engine, keyring: Keyring, world: World, clock: FakeClock
    ) -> None:
        """A key once rotated out stays out, even with a fresh code."""
        with unit_of_work(engine) as session:
            issued = issue_enrollment_code(
                session,
                keyring=keyring,
                kiosk_id=world.kiosk_id,
                now=clock.now,
                code_ttl=timedelta(hours=1),
                caller=CLI_CALLER,
            )
            enroll_kiosk(
                session,
                keyring=keyring,
                request=EnrollRequest(code=issued.code, public_key=KioskKeys().public_b64),
                now=clock.now,
            )
        with unit_of_work(engine) as session:
            issued = issue_enrollment_code(
                session,
                keyring=keyring,
                kiosk_id=world.kiosk_id,
                now=clock.now,
                code_ttl=timedelta(hours=1),
                caller=CLI_CALLER,
            )
        with unit_of_work(engine) as session, pytest.raises(PublicKeyInUse):
            enroll_kiosk(
                session,
                keyring=keyring,
                request=EnrollRequest(code=issued.code, public_key=world.keys.public_b64),
                now=clock.now,
            )
