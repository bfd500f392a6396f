"""Signatures checked ahead, outside the run (``check_ahead``, issue #11): the server's tap intake
checks each upload's signatures with the kiosk keys it already knows before queueing it, so the
one thread that decides runs does not spend its time verifying. The receipts must be those of
checking in the run; a check done with any other key than the kid's is not trusted."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import Engine

import server.kiosks.authentication as authentication
from schemas.messages import BatchReceipt, SignedEnvelope, TapStatus
from server.db import unit_of_work
from server.keyring import Keyring
from server.kiosks.authentication import PublicKeys, SignatureCheck
from server.taps.service import Upload, check_ahead, ingest_uploads
from tests.server.factories import EVENT_START, LI_CARD, ZHANG_CARD, World, known_keys, upload
from tests.server.signing import KioskKeys

RECEIVED = EVENT_START + timedelta(minutes=5)
AT = EVENT_START - timedelta(minutes=5)


def _forged(world: World) -> SignedEnvelope:
    """A tap naming the world's kiosk key, signed by somebody else's key."""
    return KioskKeys().sign_bytes(world.payload(LI_CARD, at=AT).to_bytes(), kid=world.keys.kid)


def test_receipts_are_those_of_checking_in_the_run(engine: Engine, keyring: Keyring, world: World) -> None:
    stranger = KioskKeys()
    envelopes = [
        world.keys.seal(world.payload(ZHANG_CARD, at=AT)),
        _forged(world),
        stranger.seal(world.payload(LI_CARD, at=AT)),  # a kid nobody enrolled
    ]

    payload = world.payload(LI_CARD, at=AT).model_dump(mode="json")
    payload["seq"] = -1  # signed, but out of the wire contract's bounds
    envelopes.append(world.keys.sign_bytes(json.dumps(payload).encode()))

    checked = upload(engine, keyring, envelopes, received_at=RECEIVED, public_keys=known_keys(world))
    in_run = upload(engine, keyring, envelopes, received_at=RECEIVED)

    assert [(r.status, r.code, r.field) for r in checked.receipts] == [
        (TapStatus.ACCEPTED, None, None),
        (TapStatus.REJECTED, "bad_signature", None),
        (TapStatus.REJECTED, "unknown_kiosk", None),
        (TapStatus.REJECTED, "malformed", "payload.seq"),
    ]
    # Sent again, deciding in the run: the same answers (the first tap is now a duplicate).
    assert [(r.code, r.field) for r in in_run.receipts] == [(r.code, r.field) for r in checked.receipts]


def test_a_malformed_item_is_named_as_in_the_run(engine: Engine, keyring: Keyring, world: World) -> None:
    good = world.keys.seal(world.payload(ZHANG_CARD, at=AT))
    items: list[object] = [{"kid": world.keys.kid, "payload": "!!", "sig": good.sig}, good.model_dump()]

    checked = check_ahead(Upload(envelopes=items), known_keys(world))

    assert checked.envelopes[0] == items[0]  # left as sent: the run names its field
    assert isinstance(checked.envelopes[1], SignedEnvelope)
    assert checked.checks[0] is None
    assert checked.checks[1] is not None


def test_a_check_done_with_another_key_is_done_again(engine: Engine, keyring: Keyring, world: World) -> None:
    """Whatever a check done ahead claims, it counts only if done with the key step 1 finds."""
    forged = _forged(world)
    impostor = KioskKeys()
    lie = SignatureCheck(public_key=impostor.public_b64, outcome=forged.payload_bytes())
    checked = Upload(envelopes=[forged], checks=[lie])

    receipt = _decide(engine, keyring, checked)

    assert [(r.status, r.code) for r in receipt.receipts] == [(TapStatus.REJECTED, "bad_signature")]


def test_the_run_does_not_verify_what_was_checked_ahead(
    engine: Engine, keyring: Keyring, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    taps = [world.keys.seal(world.payload(card, at=AT)) for card in (ZHANG_CARD, LI_CARD)]
    checked = check_ahead(Upload(envelopes=taps), known_keys(world))
    verified_in_run: list[bytes] = []
    real_verify = authentication.verify_signature

    def counting(public_key: str, data: bytes, signature: str) -> bool:
        verified_in_run.append(data)
        return real_verify(public_key, data, signature)

    monkeypatch.setattr(authentication, "verify_signature", counting)
    receipt = _decide(engine, keyring, checked)

    assert [r.status for r in receipt.receipts] == [TapStatus.ACCEPTED] * 2
    assert verified_in_run == []


def test_a_process_learns_the_keys_its_runs_find(engine: Engine, keyring: Keyring, world: World) -> None:
    keys = PublicKeys()
    first = world.keys.seal(world.payload(ZHANG_CARD, at=AT))
    assert check_ahead(Upload(envelopes=[first]), keys).checks == [None]  # not known yet

    upload(engine, keyring, [first], received_at=RECEIVED, public_keys=keys)

    payload = world.payload(LI_CARD, at=AT)
    second = world.keys.seal(payload)
    (check,) = check_ahead(Upload(envelopes=[second]), keys).checks
    assert check == SignatureCheck(world.keys.public_b64, second.payload_bytes(), payload)


def _decide(engine: Engine, keyring: Keyring, checked: Upload) -> BatchReceipt:
    with unit_of_work(engine) as session:
        (receipt,) = ingest_uploads(
            session, [checked], keyring=keyring, received_at=RECEIVED, max_clock_skew=timedelta(minutes=10)
        )
    return receipt
