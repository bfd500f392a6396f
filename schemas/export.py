"""Write the JSON Schema files of the wire contract: ``python -m schemas.export [--check]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from schemas.messages import (
    BatchReceipt,
    EnrollRequest,
    EnrollResponse,
    HeartbeatAck,
    HeartbeatPayload,
    KeyRotationPayload,
    KeyRotationRequest,
    KeyRotationResponse,
    SignedEnvelope,
    TapBatch,
    TapPayload,
)

EXPORTED: dict[str, type[BaseModel]] = {
    "tap_payload.v1": TapPayload,
    "signed_envelope.v1": SignedEnvelope,
    "tap_batch.v1": TapBatch,
    "batch_receipt.v1": BatchReceipt,
    "enroll_request.v1": EnrollRequest,
    "enroll_response.v1": EnrollResponse,
    "heartbeat_payload.v1": HeartbeatPayload,
    "heartbeat_ack.v1": HeartbeatAck,
    "key_rotation_payload.v1": KeyRotationPayload,
    "key_rotation_request.v1": KeyRotationRequest,
    "key_rotation_response.v1": KeyRotationResponse,
}

JSON_DIR = Path(__file__).with_name("json")


def render() -> dict[str, str]:
    """File name -> file text for every exported message."""
    return {
        f"{name}.schema.json": json.dumps(
            model.model_json_schema(mode="validation"), indent=2, ensure_ascii=False
        )
        + "\n"
        for name, model in EXPORTED.items()
    }


def stale_files(directory: Path = JSON_DIR) -> list[str]:
    rendered = render()
    stale = [
        n
        for n, text in rendered.items()
        if not (directory / n).exists() or (directory / n).read_text() != text
    ]
    extra = [p.name for p in directory.glob("*.schema.json") if p.name not in rendered]
    return sorted(stale + extra)


def main(argv: list[str]) -> int:
    if "--check" in argv:
        stale = stale_files()
        for name in stale:
            print(f"stale: schemas/json/{name} (run: python -m schemas.export)", file=sys.stderr)
        return 1 if stale else 0
    JSON_DIR.mkdir(exist_ok=True)
    for old in JSON_DIR.glob("*.schema.json"):
        old.unlink()
    for name, text in render().items():
        (JSON_DIR / name).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
