"""Migration 0011_kiosk_quarantine brings a database that took a seq beyond ``MAX_SEQ`` (before
seqs were bounded) back within bounds, so the kiosk's next device can enroll and tap."""

from __future__ import annotations

from datetime import timedelta

from alembic import command
from sqlalchemy import Engine, text
from sqlmodel import Session

from schemas.messages import MAX_SEQ, EnrollRequest
from server.caller import CLI_CALLER
from server.db import unit_of_work
from server.keyring import Keyring
from server.kiosks.service import enroll_kiosk, issue_enrollment_code
from server.migrate import alembic_config, migrate
from server.records.kiosks import Kiosk
from tests.server.conftest import FakeClock
from tests.server.factories import EVENT_START, ZHANG_CARD, World, upload
from tests.server.signing import KioskKeys

POISON = 2**63 - 1


def test_a_seq_beyond_the_bound_is_released_and_the_kiosk_continues(
    engine: Engine, keyring: Keyring, world: World, clock: FakeClock
) -> None:
    upload(
        engine,
        keyring,
        [world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START, seq=s)) for s in (1, 2)],
        received_at=EVENT_START,
    )
    # What the unbounded contract let a kiosk do: its last tap claimed 2^63−1.
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE tap SET seq = :poison, claimed_seq = :poison WHERE kiosk_id = :kiosk AND seq = 2"),
            {"poison": POISON, "kiosk": world.kiosk_id},
        )
        connection.execute(
            text("UPDATE kiosk SET last_seq = :poison WHERE id = :kiosk"),
            {"poison": POISON, "kiosk": world.kiosk_id},
        )
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0011_kiosk_quarantine-1")

    migrate(engine)

    with Session(engine) as session:
        kiosk = session.get(Kiosk, world.kiosk_id)
        assert kiosk is not None
        assert kiosk.last_seq == 1
        claimed = session.exec(text("SELECT max(claimed_seq) FROM tap")).one()  # type: ignore[call-overload]
        assert claimed[0] == 1
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
        enrolled = enroll_kiosk(
            session,
            keyring=keyring,
            request=EnrollRequest(code=issued.code, public_key=keys.public_b64),
            now=clock.now,
        )
    assert enrolled.first_seq == 2 <= MAX_SEQ
    tap = keys.seal(world.payload(ZHANG_CARD, at=EVENT_START, seq=enrolled.first_seq))
    (receipt,) = upload(engine, keyring, [tap], received_at=EVENT_START).receipts
    assert (receipt.status.value, receipt.code) == ("accepted", None)
