# ruff: noqa: F811  (the fixtures of tests/server/conftest.py are imported, and used by name)
"""Wire bounds, through the real HTTP app on SQLite and PostgreSQL: one envelope, one verdict.

Each case below once answered 500 for a whole batch (and so jammed the kiosk that kept resending
it), grew the database for anyone, or bricked a kiosk. Now a bad value rejects only its own
envelope (``malformed``, naming the field), the valid neighbour is accepted, nothing
unauthenticated costs a row, and a heartbeat out of bounds is a 422.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, func, select

from schemas.messages import (
    MAX_INT32,
    MAX_SEQ,
    MAX_SIGNED_PAYLOAD_BYTES,
    EnrollRequest,
    EnrollResponse,
    SignedEnvelope,
    TapBatch,
    b64url_encode,
)
from server.caller import CLI_CALLER
from server.db import unit_of_work
from server.keyring import Keyring
from server.kiosks.service import issue_enrollment_code
from server.records.kiosks import Kiosk
from server.records.taps import Tap
from server.taps.strangers import StrangerTally
from tests.server.conftest import (  # noqa: F401  (fixtures, used by name)
    FakeClock,
    client,
    clock,
    database_url,
    engine,
    keyring,
    settings,
    sqlite_template,
    world,
)
from tests.server.factories import EVENT_START, ZHANG_CARD, World
from tests.server.kiosks.messages import heartbeat
from tests.server.signing import KioskKeys

TAPS = "/api/v1/taps"
HEARTBEAT = "/api/v1/kiosks/heartbeat"
ENROLL = "/api/v1/kiosks/enroll"
YEAR_ONE = "0001-01-01T00:00:00+14:00"
YEAR_9999 = "9999-12-31T23:59:59-14:00"


def tap_fields(world: World) -> dict[str, Any]:
    """A valid tap payload of the world's kiosk (its next seq) as JSON fields, to be bent and signed."""
    fields: dict[str, Any] = world.payload(ZHANG_CARD, at=EVENT_START).model_dump(mode="json")
    return fields


def signed_raw(keys: KioskKeys, raw: bytes) -> dict[str, Any]:
    return {"kid": keys.kid, "payload": b64url_encode(raw), "sig": b64url_encode(keys.private.sign(raw))}


def signed(keys: KioskKeys, fields: dict[str, Any]) -> dict[str, Any]:
    """An envelope signed by *keys* over exactly these fields, as JSON (it may break the contract)."""
    return signed_raw(keys, json.dumps(fields, ensure_ascii=False).encode())


def good(world: World) -> dict[str, Any]:
    envelope: dict[str, Any] = world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START)).model_dump(
        mode="json"
    )
    return envelope


def post_batch(client: TestClient, envelopes: list[Any]) -> list[tuple[str, str | None, str | None]]:
    response = client.post(TAPS, json={"schema_version": 1, "envelopes": envelopes})
    assert response.status_code == 200, response.text
    receipts = response.json()["receipts"]
    assert [r["index"] for r in receipts] == list(range(len(envelopes)))
    return [(r["status"], r["code"], r["field"]) for r in receipts]


def tap_rows(engine: Engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(Tap)).one()


def accepted_seqs(engine: Engine, kiosk_id: str) -> list[int]:
    with Session(engine) as session:
        rows = session.exec(
            select(Tap.seq).where(Tap.kiosk_id == kiosk_id, Tap.outcome == "accepted").order_by(col(Tap.seq))
        ).all()
    return [seq for seq in rows if seq is not None]


def replace_device(
    client: TestClient, engine: Engine, keyring: Keyring, world: World, clock: FakeClock
) -> tuple[KioskKeys, EnrollResponse]:
    """A new device for the world's kiosk: a fresh code, enrolled over HTTP with a new key."""
    with unit_of_work(engine) as session:
        issued = issue_enrollment_code(
            session,
            keyring=keyring,
            kiosk_id=world.kiosk_id,
            now=clock.now,
            code_ttl=timedelta(hours=1),
            caller=CLI_CALLER,
        )
    keys = KioskKeys()
    request = EnrollRequest(code=issued.code, public_key=keys.public_b64, agent_version="2.0")
    response = client.post(ENROLL, json=request.model_dump(mode="json"))
    assert response.status_code == 200, response.text
    return keys, EnrollResponse.model_validate(response.json())


@pytest.fixture(autouse=True)
def _during_the_event(clock: FakeClock) -> None:
    clock.now = EVENT_START + timedelta(minutes=5)


class TestTapTimes:
    @pytest.mark.parametrize("occurred_at", [YEAR_ONE, YEAR_9999], ids=["year-1", "year-9999"])
    def test_a_time_out_of_range_rejects_only_its_envelope(
        self, client: TestClient, engine: Engine, world: World, occurred_at: str
    ) -> None:
        """Once a 500 for the whole batch (astimezone overflowed): now malformed, the neighbour taken."""
        bent = tap_fields(world) | {"occurred_at": occurred_at}
        assert post_batch(client, [signed(world.keys, bent), good(world)]) == [
            ("rejected", "malformed", "payload.occurred_at"),
            ("accepted", None, None),
        ]
        assert accepted_seqs(engine, world.kiosk_id) == [2]

    def test_an_offset_beyond_fourteen_hours_is_malformed(self, client: TestClient, world: World) -> None:
        bent = tap_fields(world) | {"occurred_at": "2025-03-01T09:00:00+23:59"}
        assert post_batch(client, [signed(world.keys, bent)]) == [
            ("rejected", "malformed", "payload.occurred_at")
        ]

    def test_the_kiosk_is_heard_again_after_a_bad_envelope(self, client: TestClient, world: World) -> None:
        """The same batch sent again gets the same answers: nothing is stuck on the server side."""
        batch = [signed(world.keys, tap_fields(world) | {"occurred_at": YEAR_ONE}), good(world)]
        first = post_batch(client, batch)
        again = post_batch(client, batch)
        assert first[0] == again[0] == ("rejected", "malformed", "payload.occurred_at")
        assert again[1][0] == "duplicate"


class TestSeqBounds:
    def test_a_seq_that_leaves_no_successor_is_malformed_and_the_next_device_works(
        self, client: TestClient, engine: Engine, keyring: Keyring, world: World, clock: FakeClock
    ) -> None:
        """2^63−1 once became the kiosk's last seq and every replacement device was refused."""
        huge = signed(world.keys, tap_fields(world) | {"seq": 2**63 - 1})
        assert post_batch(client, [huge, good(world)]) == [
            ("rejected", "malformed", "payload.seq"),
            ("accepted", None, None),
        ]
        keys, enrolled = replace_device(client, engine, keyring, world, clock)
        assert enrolled.first_seq == 3  # after the valid neighbour's seq 2
        tap = world.payload(ZHANG_CARD, at=EVENT_START, seq=enrolled.first_seq)
        assert post_batch(client, [keys.seal(tap).model_dump(mode="json")])[0][0] == "accepted"

    def test_the_highest_seq_still_leaves_room_for_a_replacement(
        self, client: TestClient, engine: Engine, keyring: Keyring, world: World, clock: FakeClock
    ) -> None:
        """A kiosk at MAX_SEQ − 1 (a huge but legal seq) hands its successor MAX_SEQ, which works."""
        near_end = world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START, seq=MAX_SEQ - 1))
        assert post_batch(client, [near_end.model_dump(mode="json")]) == [("accepted", None, None)]
        keys, enrolled = replace_device(client, engine, keyring, world, clock)
        assert enrolled.first_seq == MAX_SEQ
        last = keys.seal(world.payload(ZHANG_CARD, at=EVENT_START, seq=MAX_SEQ))
        assert post_batch(client, [last.model_dump(mode="json")])[0][0] == "accepted"
        with Session(engine) as session:
            kiosk = session.get(Kiosk, world.kiosk_id)
            assert kiosk is not None
            assert kiosk.last_seq == MAX_SEQ

    def test_seq_zero_and_negative_are_malformed(self, client: TestClient, world: World) -> None:
        envelopes = [signed(world.keys, tap_fields(world) | {"seq": seq}) for seq in (0, -1)]
        assert post_batch(client, envelopes) == [("rejected", "malformed", "payload.seq")] * 2


class TestEnvelopeBounds:
    def test_a_nul_in_kid_rejects_only_its_envelope(
        self, client: TestClient, engine: Engine, world: World
    ) -> None:
        """Once a 500 for the whole batch, with no credentials needed; now no row at all for it."""
        broken = good(world) | {"kid": "ed25519:\x00" + "0" * 15}
        assert post_batch(client, [broken, good(world)]) == [
            ("rejected", "malformed", "kid"),
            ("accepted", None, None),
        ]
        assert tap_rows(engine) == 1

    @pytest.mark.parametrize(
        "kid", ["kiosk-key", "ed25519:ABCDEF0123456789", "ed25519:0123", "ed25519:" + "0" * 17, ""]
    )
    def test_kid_has_its_exact_format(self, client: TestClient, world: World, kid: str) -> None:
        assert post_batch(client, [good(world) | {"kid": kid}]) == [("rejected", "malformed", "kid")]

    def test_unknown_kid_costs_no_row(self, client: TestClient, engine: Engine, world: World) -> None:
        """Two unauthenticated requests once added 400 rows; now none, only a count per source."""
        stranger = KioskKeys()
        rows_before = tap_rows(engine)
        for _ in range(2):
            batch = [stranger.seal(world.payload(ZHANG_CARD, at=EVENT_START)) for _ in range(200)]
            body = TapBatch(envelopes=batch).model_dump(mode="json")
            receipts = client.post(TAPS, json=body).json()["receipts"]
            assert {(r["status"], r["code"]) for r in receipts} == {("rejected", "unknown_kiosk")}
            assert len(receipts) == 200
        assert tap_rows(engine) == rows_before
        strangers = client.app.state.tap_strangers  # type: ignore[attr-defined]
        assert isinstance(strangers, StrangerTally)
        assert strangers.count("testclient") == 400

    def test_a_forged_signature_costs_no_row(self, client: TestClient, engine: Engine, world: World) -> None:
        """Knowing a kiosk's kid is no credential: a signature by another key is stored nowhere."""
        forged = KioskKeys().sign_bytes(
            world.payload(ZHANG_CARD, at=EVENT_START).to_bytes(), kid=world.keys.kid
        )
        assert post_batch(client, [forged.model_dump(mode="json")]) == [("rejected", "bad_signature", None)]
        assert tap_rows(engine) == 0

    def test_a_payload_that_is_not_base64url_costs_no_row(
        self, client: TestClient, engine: Engine, world: World
    ) -> None:
        broken = good(world) | {"payload": "A"}  # one character: no byte decodes from it
        assert post_batch(client, [broken, good(world)]) == [
            ("rejected", "malformed", "payload"),
            ("accepted", None, None),
        ]
        assert tap_rows(engine) == 1

    def test_a_padded_signed_payload_is_refused_by_its_size(
        self, client: TestClient, engine: Engine, world: World
    ) -> None:
        """A correctly signed tap padded with whitespace once went through at 5 MB; now the payload
        has a cap, checked before any signature work, and the whole body has one (413)."""
        raw = world.payload(ZHANG_CARD, at=EVENT_START).to_bytes()
        padded = raw + b" " * (MAX_SIGNED_PAYLOAD_BYTES + 1 - len(raw))
        envelope = signed_raw(world.keys, padded)
        assert post_batch(client, [envelope, good(world)]) == [
            ("rejected", "malformed", "payload"),
            ("accepted", None, None),
        ]
        huge = raw + b" " * (5 * 1024 * 1024)
        response = client.post(
            TAPS,
            json={"schema_version": 1, "envelopes": [signed_raw(world.keys, huge)]},
        )
        assert response.status_code == 413
        assert response.json()["error"] == "payload_too_large"
        assert tap_rows(engine) == 1

    def test_a_signed_payload_at_the_cap_is_read(self, client: TestClient, world: World) -> None:
        raw = world.payload(ZHANG_CARD, at=EVENT_START).to_bytes()
        padded = raw + b" " * (MAX_SIGNED_PAYLOAD_BYTES - len(raw))
        assert post_batch(client, [world.keys.sign_bytes(padded).model_dump(mode="json")])[0][0] == "accepted"

    def test_nul_and_controls_in_signed_text_are_malformed(self, client: TestClient, world: World) -> None:
        fields = tap_fields(world)
        bent = [
            fields | {"kiosk_id": world.kiosk_id + "\x00"},
            fields | {"reader": fields["reader"] | {"name": "reader\x1b[2J"}},
        ]
        assert post_batch(client, [signed(world.keys, b) for b in bent]) == [
            ("rejected", "malformed", "payload.kiosk_id"),
            ("rejected", "malformed", "payload.reader.name"),
        ]

    def test_items_that_are_not_envelopes_each_get_a_receipt(self, client: TestClient, world: World) -> None:
        junk: list[Any] = [1, "x", None, [], {}, {"kid": 5}, good(world) | {"extra\x00field": 1}]
        receipts = post_batch(client, [*junk, good(world)])
        assert receipts[:-1] == [
            ("rejected", "malformed", "envelope"),
            ("rejected", "malformed", "envelope"),
            ("rejected", "malformed", "envelope"),
            ("rejected", "malformed", "envelope"),
            ("rejected", "malformed", "kid"),
            ("rejected", "malformed", "kid"),
            ("rejected", "malformed", "extrafield"),
        ]
        assert receipts[-1] == ("accepted", None, None)

    @pytest.mark.parametrize(
        "body",
        [
            b"not json",
            b"[]",
            b'"batch"',
            b'{"envelopes": []}',
            b'{"envelopes": "x"}',
            b'{"schema_version": 2, "envelopes": [{}]}',
            b'{"schema_version": 1, "envelopes": [{}], "more": 1}',
            b"[" * 100_000 + b"]" * 100_000,
            json.dumps({"envelopes": [{}] * 201}).encode(),
        ],
        ids=["not-json", "list", "string", "empty", "not-a-list", "version-2", "extra", "deep", "too-many"],
    )
    def test_a_body_that_is_not_a_batch_is_a_4xx(self, client: TestClient, body: bytes) -> None:
        response = client.post(TAPS, content=body, headers={"Content-Type": "application/json"})
        assert 400 <= response.status_code < 500, response.text
        assert "error" in response.json()


class TestHeartbeatBounds:
    def _post(self, client: TestClient, envelope: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        response = client.post(HEARTBEAT, json=envelope)
        body: dict[str, Any] = response.json()
        return response.status_code, body

    def _fields(self, world: World, clock: FakeClock) -> dict[str, Any]:
        fields: dict[str, Any] = json.loads(
            heartbeat(world.keys, kiosk_id=world.kiosk_id, sent_at=clock.now).payload_bytes()
        )
        return fields

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"sent_at": YEAR_ONE}, "payload.sent_at"),
            ({"sent_at": YEAR_9999}, "payload.sent_at"),
            ({"outbox_pending": 2**31}, "payload.outbox_pending"),
            ({"outbox_quarantined": 2**31}, "payload.outbox_quarantined"),
            ({"last_seq": 2**63 - 1}, "payload.last_seq"),
            ({"counter": 2**63}, "payload.counter"),
            ({"oldest_pending_age_s": 1e300}, "payload.oldest_pending_age_s"),
            ({"reader_name": "ACR\x00122"}, "payload.reader_name"),
            ({"agent_version": "1.0\n"}, "payload.agent_version"),
        ],
        ids=[
            "year-1",
            "year-9999",
            "pending-2^31",
            "quarantined-2^31",
            "last-seq-2^63",
            "counter-2^63",
            "age-1e300",
            "nul-reader",
            "newline-version",
        ],
    )
    def test_out_of_bounds_is_a_422_naming_the_field(
        self, client: TestClient, world: World, clock: FakeClock, change: dict[str, Any], field: str
    ) -> None:
        """Each of these was a 500 (or would be on PostgreSQL); now 422 malformed with the field."""
        status, body = self._post(client, signed(world.keys, self._fields(world, clock) | change))
        assert (status, body["error"], body.get("field")) == (422, "malformed", field)

    def test_nan_interval_is_a_422(self, client: TestClient, world: World, clock: FakeClock) -> None:
        fields = self._fields(world, clock)
        raw = json.dumps(fields | {"interval_s": float("nan")}).encode()
        assert b"NaN" in raw
        envelope = {
            "kid": world.keys.kid,
            "payload": b64url_encode(raw),
            "sig": b64url_encode(world.keys.private.sign(raw)),
        }
        status, body = self._post(client, envelope)
        assert (status, body["error"], body.get("field")) == (422, "malformed", "payload.interval_s")

    def test_a_nul_in_kid_is_a_422(self, client: TestClient, world: World, clock: FakeClock) -> None:
        envelope = signed(world.keys, self._fields(world, clock)) | {"kid": "ed25519:\x00" + "0" * 15}
        status, body = self._post(client, envelope)
        assert (status, body["error"]) == (422, "invalid_request")

    def test_counters_at_their_column_limits_are_stored(
        self, client: TestClient, world: World, clock: FakeClock
    ) -> None:
        """The largest values the contract allows fit their columns, on PostgreSQL too."""
        limits = {
            "outbox_pending": MAX_INT32,
            "outbox_quarantined": MAX_INT32,
            "last_seq": MAX_SEQ,
            "counter": MAX_SEQ,
        }
        status, body = self._post(client, signed(world.keys, self._fields(world, clock) | limits))
        assert status == 200, body


class TestKeyRotationBounds:
    def test_a_rotation_from_year_one_is_a_422(
        self, client: TestClient, world: World, clock: FakeClock
    ) -> None:
        new = KioskKeys()
        fields = {
            "schema_version": 1,
            "kind": "key_rotation",
            "kiosk_id": world.kiosk_id,
            "new_public_key": new.public_b64,
            "last_seq": 0,
            "requested_at": YEAR_ONE,
        }
        raw = json.dumps(fields).encode()
        envelope = SignedEnvelope(
            kid=world.keys.kid, payload=b64url_encode(raw), sig=b64url_encode(world.keys.private.sign(raw))
        )
        body = {
            "envelope": envelope.model_dump(mode="json"),
            "new_key_sig": b64url_encode(new.private.sign(raw)),
        }
        response = client.post("/api/v1/kiosks/rotate-key", json=body)
        assert response.status_code == 422, response.text
        assert (response.json()["error"], response.json()["field"]) == ("malformed", "payload.requested_at")
