"""The wire contract between the kiosk reader agent and the server.

Both ``reader_agent`` and ``server`` import this package; neither imports the other. The pydantic
models in :mod:`schemas.messages` are the source of truth; ``python -m schemas.export`` writes the
JSON Schema files under ``schemas/json/`` and a test fails when they are stale.
"""

from schemas.messages import (
    MAX_BATCH_SIZE,
    BatchReceipt,
    CardApplication,
    CardAuth,
    CardAuthAlgorithm,
    CardFacts,
    EnrollRequest,
    EnrollResponse,
    HeartbeatAck,
    HeartbeatPayload,
    KeyRotationPayload,
    KeyRotationRequest,
    KeyRotationResponse,
    ReaderBackend,
    ReaderInfo,
    ReaderState,
    SignedEnvelope,
    TapBatch,
    TapDisplay,
    TapMode,
    TapPayload,
    TapReceipt,
    TapStatus,
    card_auth_challenge,
)

__all__ = [
    "MAX_BATCH_SIZE",
    "BatchReceipt",
    "CardApplication",
    "CardAuth",
    "CardAuthAlgorithm",
    "CardFacts",
    "EnrollRequest",
    "EnrollResponse",
    "HeartbeatAck",
    "HeartbeatPayload",
    "KeyRotationPayload",
    "KeyRotationRequest",
    "KeyRotationResponse",
    "ReaderBackend",
    "ReaderInfo",
    "ReaderState",
    "SignedEnvelope",
    "TapBatch",
    "TapDisplay",
    "TapMode",
    "TapPayload",
    "TapReceipt",
    "TapStatus",
    "card_auth_challenge",
]
