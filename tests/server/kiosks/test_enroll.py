"""Kiosk enrollment over HTTP (``POST /api/v1/kiosks/enroll``) and its service rules."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from schemas.messages import EnrollRequest, EnrollResponse, b64url_encode
from server.caller import CLI_CALLER
from server.db import unit_of_work
from server.errors import EnrollmentCodeInvalid, KioskRevoked
from server.keyring import Keyring
from server.kiosks.service import add_kiosk, enroll_kiosk, issue_enrollment_code, revoke_kiosk
from server.records.kiosks import Kiosk
from server.vocabulary import KioskStatus
from tests.server.conftest import FakeClock
from tests.server.factories import World
from tests.server.signing import KioskKeys

ENROLL = "/api/v1/kiosks/enroll"
# Unknown, used and expired codes get this one answer (the audit log keeps which it was).
INVALID_CODE_MESSAGE = EnrollmentCodeInvalid.default_message


def enroll_body(code: str, keys: KioskKeys) -> dict[str, object]:
    return EnrollRequest(code=code, public_key=keys.public_b64, agent_version="1.0").model_dump(mode="json")


class TestEnrollRoute:
    def test_code_and_key_give_the_kiosk_its_identity(
        self, client: TestClient, engine: Engine, world: World, clock: FakeClock
    ) -> None:
        """A fresh code plus a public key → kiosk id, kid and server time; the kiosk is active."""
        keys = KioskKeys()
        response = client.post(ENROLL, json=enroll_body(world.spare_code, keys))

        assert response.status_code == 200, response.text
        enrolled = EnrollResponse.model_validate(response.json())
        assert enrolled.kid == keys.kid
        assert enrolled.kiosk_name == "二号机"
        assert enrolled.venue_name == "党员活动室"
        assert enrolled.server_time == clock.now
        with Session(engine) as session:
            kiosk = session.get(Kiosk, enrolled.kiosk_id)
            assert kiosk is not None
            assert (kiosk.status, kiosk.kid, kiosk.agent_version) == (KioskStatus.ACTIVE, keys.kid, "1.0")

    def test_code_is_single_use(self, client: TestClient, world: World) -> None:
        """A used code refuses another key, with the answer an unknown code gets (400)."""
        assert client.post(ENROLL, json=enroll_body(world.spare_code, KioskKeys())).status_code == 200
        response = client.post(ENROLL, json=enroll_body(world.spare_code, KioskKeys()))
        assert response.status_code == 400
        assert response.json() == {"error": "enrollment_code_invalid", "detail": INVALID_CODE_MESSAGE}

    def test_retry_with_the_same_key_gets_the_same_answer(self, client: TestClient, world: World) -> None:
        """An agent whose first response was lost can enroll again with the same key."""
        keys = KioskKeys()
        first = client.post(ENROLL, json=enroll_body(world.spare_code, keys))
        again = client.post(ENROLL, json=enroll_body(world.spare_code, keys))
        assert again.status_code == 200
        assert again.json()["kiosk_id"] == first.json()["kiosk_id"]

    def test_expired_code(self, client: TestClient, world: World, clock: FakeClock) -> None:
        """After its lifetime a code is gone, with the answer an unknown code gets (400)."""
        clock.advance(hours=24)
        response = client.post(ENROLL, json=enroll_body(world.spare_code, KioskKeys()))
        assert response.status_code == 400
        assert response.json() == {"error": "enrollment_code_invalid", "detail": INVALID_CODE_MESSAGE}

    @pytest.mark.usefixtures("world")
    def test_unknown_code(self, client: TestClient) -> None:
        """A code nobody issued: 400 enrollment_code_invalid."""
        response = client.post(ENROLL, json=enroll_body("ZZZZ-ZZZZ-ZZZZ", KioskKeys()))
        assert response.status_code == 400
        assert response.json() == {"error": "enrollment_code_invalid", "detail": INVALID_CODE_MESSAGE}

    @pytest.mark.parametrize(
        "public_key",
        [b64url_encode(b"\x01" * 31), b64url_encode(b"\x01" * 33), "A"],
        ids=["short", "long", "not-decodable"],
    )
    def test_bad_public_key(self, client: TestClient, world: World, public_key: str) -> None:
        """Anything but a raw 32-byte Ed25519 key: 400 bad_public_key, and the code stays usable."""
        body = {"code": world.spare_code, "public_key": public_key}
        response = client.post(ENROLL, json=body)
        assert response.status_code == 400
        assert response.json()["error"] == "bad_public_key"
        assert client.post(ENROLL, json=enroll_body(world.spare_code, KioskKeys())).status_code == 200

    def test_code_typed_loosely_still_works(self, client: TestClient, world: World) -> None:
        """Lower case, no dashes, O for 0 and I for 1: the code is read the way a person types it."""
        loose = world.spare_code.replace("-", "").lower().replace("0", "o").replace("1", "i")
        assert client.post(ENROLL, json=enroll_body(loose, KioskKeys())).status_code == 200

    def test_key_of_another_kiosk(self, client: TestClient, world: World) -> None:
        """One key, one kiosk: re-using kiosk 1's key for kiosk 2 is refused (409)."""
        response = client.post(ENROLL, json=enroll_body(world.spare_code, world.keys))
        assert response.status_code == 409
        assert response.json()["error"] == "public_key_in_use"


class TestEnrollmentCodes:
    def test_new_code_replaces_the_unused_one(
        self, engine: Engine, keyring: Keyring, world: World, clock: FakeClock
    ) -> None:
        """Issuing a code for a kiosk voids its earlier unused code."""
        now = clock.now
        with unit_of_work(engine) as session:
            issued = add_kiosk(
                session,
                keyring=keyring,
                name="三号机",
                venue_id=world.venue_id,
                now=now,
                code_ttl=timedelta(hours=1),
                caller=CLI_CALLER,
            )
            replacement = issue_enrollment_code(
                session,
                keyring=keyring,
                kiosk_id=issued.kiosk.id,
                now=now,
                code_ttl=timedelta(hours=1),
                caller=CLI_CALLER,
            )
        with unit_of_work(engine) as session, pytest.raises(EnrollmentCodeInvalid):
            enroll_kiosk(
                session,
                keyring=keyring,
                request=EnrollRequest(code=issued.code, public_key=KioskKeys().public_b64),
                now=now,
            )
        with unit_of_work(engine) as session:
            enroll_kiosk(
                session,
                keyring=keyring,
                request=EnrollRequest(code=replacement.code, public_key=KioskKeys().public_b64),
                now=now,
            )

    def test_revoked_kiosk_cannot_get_a_code(
        self, engine: Engine, keyring: Keyring, world: World, clock: FakeClock
    ) -> None:
        """A revoked kiosk stays revoked: no new code."""
        now = clock.now
        with unit_of_work(engine) as session:
            revoke_kiosk(session, kiosk_id=world.kiosk_id, now=now, caller=CLI_CALLER)
        with unit_of_work(engine) as session, pytest.raises(KioskRevoked) as excinfo:
            issue_enrollment_code(
                session,
                keyring=keyring,
                kiosk_id=world.kiosk_id,
                now=now,
                code_ttl=timedelta(hours=1),
                caller=CLI_CALLER,
            )
        assert excinfo.value.code == "kiosk_revoked"
