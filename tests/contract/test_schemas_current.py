"""The committed JSON Schema files are exactly what the pydantic models generate."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from schemas import SignedEnvelope, TapBatch
from schemas.export import JSON_DIR, render, stale_files
from schemas.messages import b64url_decode, b64url_encode


def test_committed_json_schemas_are_current() -> None:
    """Changing a message without regenerating schemas/json fails here."""
    assert stale_files() == [], "run: python -m schemas.export"


def test_stale_file_is_detected(tmp_path: Path) -> None:
    """The freshness check notices an edited, a missing and a leftover file."""
    for name, text in render().items():
        (tmp_path / name).write_text(text)
    (tmp_path / "tap_payload.v1.schema.json").write_text("{}")
    (tmp_path / "tap_batch.v1.schema.json").unlink()
    (tmp_path / "old.v0.schema.json").write_text("{}")
    assert stale_files(tmp_path) == [
        "old.v0.schema.json",
        "tap_batch.v1.schema.json",
        "tap_payload.v1.schema.json",
    ]


def test_a_real_batch_validates_against_the_committed_schema() -> None:
    """What the models produce is accepted by the JSON Schema other implementations would use."""
    envelope = SignedEnvelope(
        kid="ed25519:0011223344556677", payload=b64url_encode(b"{}"), sig=b64url_encode(b"s" * 64)
    )
    batch = TapBatch(envelopes=[envelope])
    schema = json.loads((JSON_DIR / "tap_batch.v1.schema.json").read_text())
    jsonschema.validate(json.loads(batch.model_dump_json()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"schema_version": 1, "envelopes": []}, schema)


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xff\xfe\xfd", bytes(range(64))])
def test_base64url_round_trip(data: bytes) -> None:
    """Envelope encoding is unpadded base64url and decodes back to the same bytes."""
    text = b64url_encode(data)
    assert "=" not in text
    assert b64url_decode(text) == data


def test_base64url_rejects_other_alphabets() -> None:
    """Standard base64 characters are not silently accepted."""
    with pytest.raises(ValueError, match="base64url"):
        b64url_decode("ab+/")
