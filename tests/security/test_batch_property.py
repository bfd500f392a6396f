# ruff: noqa: F811  (the fixtures of tests/server/conftest.py are imported, and used by name)
"""A property of the tap batch, on SQLite and PostgreSQL: any mix of valid and hostile envelopes
gets a 200 with exactly one receipt per envelope, in order; every valid envelope is accepted (a
resent one is a duplicate), every hostile one gets its own refusal, and only envelopes the kiosk's
key signed cost a row."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import Session, func, select

from schemas.messages import MAX_BATCH_SIZE, MAX_SEQ, MAX_SIGNED_PAYLOAD_BYTES, b64url_encode
from server.records.taps import Tap
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
from tests.server.signing import KioskKeys

STRANGER = KioskKeys()
FORGER = KioskKeys()

# kind -> (status, code) of its receipt; "field" is checked for the malformed ones.
EXPECTED: dict[str, tuple[str, str | None]] = {
    "valid": ("accepted", None),
    "duplicate": ("duplicate", None),
    "bad_base64": ("rejected", "malformed"),
    "unknown_kid": ("rejected", "unknown_kiosk"),
    "bad_signature": ("rejected", "bad_signature"),
    "time_out_of_range": ("rejected", "malformed"),
    "huge_seq": ("rejected", "malformed"),
    "nul_in_kid": ("rejected", "malformed"),
    "oversized_payload": ("rejected", "malformed"),
    "junk": ("rejected", "malformed"),
}
SIGNED_BY_THE_KIOSK = {"valid", "time_out_of_range", "huge_seq"}  # the kinds that cost a row

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
kinds = st.lists(st.sampled_from(sorted(EXPECTED)), min_size=1, max_size=12)


def _signed_raw(keys: KioskKeys, raw: bytes, *, kid: str | None = None) -> dict[str, Any]:
    return {
        "kid": kid or keys.kid,
        "payload": b64url_encode(raw),
        "sig": b64url_encode(keys.private.sign(raw)),
    }


def _fields(world: World) -> dict[str, Any]:
    fields: dict[str, Any] = world.payload(ZHANG_CARD, at=EVENT_START).model_dump(mode="json")
    return fields


def build(kind: str, world: World, data: st.DataObject, sent: list[dict[str, Any]]) -> tuple[str, Any]:
    """The kind actually built and one batch item of it; *sent* holds the valid envelopes so far,
    and a duplicate resends one of them (with none yet, it is the first valid one)."""
    if kind == "duplicate" and not sent:
        kind = "valid"
    return kind, _item(kind, world, data, sent)


def _item(kind: str, world: World, data: st.DataObject, sent: list[dict[str, Any]]) -> Any:
    if kind == "valid":
        envelope = world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START)).model_dump(mode="json")
        sent.append(envelope)
        return envelope
    if kind == "duplicate":
        return data.draw(st.sampled_from(sent))
    if kind == "bad_base64":
        return {
            "kid": world.keys.kid,
            "payload": data.draw(st.sampled_from(["A", "AAAAA", "%%", "a b"])),
            "sig": "A" * 86,
        }
    if kind == "unknown_kid":
        return STRANGER.seal(world.payload(ZHANG_CARD, at=EVENT_START)).model_dump(mode="json")
    if kind == "bad_signature":
        return _signed_raw(FORGER, world.payload(ZHANG_CARD, at=EVENT_START).to_bytes(), kid=world.keys.kid)
    if kind == "time_out_of_range":
        when = data.draw(
            st.sampled_from(
                ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1999-12-31T23:59:59Z"]
            )
        )
        return _signed_raw(world.keys, json.dumps(_fields(world) | {"occurred_at": when}).encode())
    if kind == "huge_seq":
        seq = data.draw(st.integers(min_value=MAX_SEQ + 1, max_value=2**70))
        return _signed_raw(world.keys, json.dumps(_fields(world) | {"seq": seq}).encode())
    if kind == "nul_in_kid":
        return world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START)).model_dump(mode="json") | {
            "kid": "ed25519:\x00" + "0" * 15
        }
    if kind == "oversized_payload":
        raw = world.payload(ZHANG_CARD, at=EVENT_START).to_bytes()
        return _signed_raw(world.keys, raw + b" " * (MAX_SIGNED_PAYLOAD_BYTES + 1 - len(raw)))
    return data.draw(json_values.filter(lambda value: not isinstance(value, dict) or "kid" not in value))


def tap_rows(engine: Engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(Tap)).one()


@examples(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chosen=kinds, data=st.data())
def test_any_mix_gets_one_verdict_per_envelope(
    client: TestClient,
    engine: Engine,
    world: World,
    clock: FakeClock,
    chosen: list[str],
    data: st.DataObject,
) -> None:
    clock.now = EVENT_START + timedelta(minutes=5)
    assert len(chosen) <= MAX_BATCH_SIZE
    sent: list[dict[str, Any]] = []
    built = [build(kind, world, data, sent) for kind in chosen]
    kinds_built = [kind for kind, _ in built]
    items = [item for _, item in built]
    rows_before = tap_rows(engine)

    response = client.post("/api/v1/taps", json={"schema_version": 1, "envelopes": items})

    assert response.status_code == 200, response.text
    receipts = response.json()["receipts"]
    assert [r["index"] for r in receipts] == list(range(len(items)))
    for kind, receipt in zip(kinds_built, receipts, strict=True):
        assert (receipt["status"], receipt["code"]) == EXPECTED[kind], (kind, receipt)
        if receipt["code"] == "malformed":
            assert receipt["field"], (kind, receipt)
    assert tap_rows(engine) - rows_before == sum(kind in SIGNED_BY_THE_KIOSK for kind in kinds_built)
