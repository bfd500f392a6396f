"""``POST /api/v1/taps`` over HTTP: receipts that honour the published JSON schema, and the error
shape for batches that do not parse."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]  # no stubs in the dev set
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from schemas.messages import BatchReceipt, TapBatch
from server.app import create_app
from server.config import ServerSettings
from server.records.taps import Tap
from tests.server.conftest import FakeClock
from tests.server.factories import EVENT_START, STRANGER_CARD, ZHANG_CARD, World

TAPS = "/api/v1/taps"
SCHEMA_DIR = Path(__file__).resolve().parents[3] / "schemas" / "json"


class TestUpload:
    def test_receipts_follow_the_published_schema(
        self, client: TestClient, world: World, clock: FakeClock
    ) -> None:
        """A batch gets 200 and one receipt per envelope, valid against batch_receipt.v1."""
        clock.now = EVENT_START + timedelta(minutes=2)
        batch = TapBatch(
            envelopes=[
                world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START)),
                world.keys.seal(world.payload(STRANGER_CARD, at=EVENT_START)),
            ]
        )
        response = client.post(TAPS, json=batch.model_dump(mode="json"))

        assert response.status_code == 200, response.text
        schema = json.loads((SCHEMA_DIR / "batch_receipt.v1.schema.json").read_text())
        jsonschema.validate(response.json(), schema)
        receipts = BatchReceipt.model_validate(response.json())
        assert receipts.server_time == clock.now
        assert [(r.index, r.status.value, r.code) for r in receipts.receipts] == [
            (0, "accepted", None),
            (1, "rejected", "unknown_card"),
        ]
        assert receipts.receipts[0].display.member_name == "张*明"

    def test_replay_over_http_is_a_duplicate(
        self, client: TestClient, world: World, clock: FakeClock
    ) -> None:
        """Re-sending after a lost response gets the original answer back as a duplicate."""
        clock.now = EVENT_START
        body = TapBatch(envelopes=[world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START))]).model_dump(
            mode="json"
        )
        first = client.post(TAPS, json=body).json()["receipts"][0]
        again = client.post(TAPS, json=body).json()["receipts"][0]
        assert again["status"] == "duplicate"
        assert again["display"] == first["display"]

    def test_empty_batch_is_refused_whole(self, client: TestClient) -> None:
        """A batch that breaks the contract is a 422 in the common error shape."""
        response = client.post(TAPS, json={"schema_version": 1, "envelopes": []})
        assert response.status_code == 422
        body = response.json()
        assert body["error"] == "invalid_request"
        assert body["problems"][0]["loc"] == ["body", "envelopes"]

    def test_refusal_does_not_echo_the_envelopes(self, client: TestClient, world: World) -> None:
        """An envelope that breaks the contract gets its own malformed receipt naming the field,
        and neither it nor a refused body sends the submitted payload (raw card data) back."""
        envelope = world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START)).model_dump(mode="json")
        envelope["unexpected"] = True
        response = client.post(TAPS, json={"schema_version": 1, "envelopes": [envelope]})
        assert response.status_code == 200
        (receipt,) = response.json()["receipts"]
        assert (receipt["status"], receipt["code"], receipt["field"]) == (
            "rejected",
            "malformed",
            "unexpected",
        )
        assert envelope["payload"] not in response.text
        whole = client.post(TAPS, json={"schema_version": 1, "envelopes": [envelope], "extra": envelope})
        assert whole.status_code == 422
        assert envelope["payload"] not in whole.text

    def test_not_json(self, client: TestClient) -> None:
        """A body that is not JSON at all: 422 invalid_request."""
        response = client.post(TAPS, content=b"\x00garbage", headers={"Content-Type": "application/json"})
        assert response.status_code == 422
        assert response.json()["error"] == "invalid_request"


class TestCommitBeforeAnswer:
    def test_failed_commit_is_never_acknowledged(
        self,
        settings: ServerSettings,
        engine: Engine,
        world: World,
        clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """If the taps cannot be committed the kiosk gets a 500, not receipts, so it keeps them."""
        clock.now = EVENT_START

        def failing_commit(self: Session) -> None:
            raise RuntimeError("disk full")

        monkeypatch.setattr(Session, "commit", failing_commit)
        body = TapBatch(envelopes=[world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START))]).model_dump(
            mode="json"
        )
        with TestClient(create_app(settings, clock=clock), raise_server_exceptions=False) as client:
            response = client.post(TAPS, json=body)
        monkeypatch.undo()

        assert response.status_code == 500
        with Session(engine) as session:
            assert session.exec(select(Tap)).first() is None


class TestHealth:
    def test_health_reports_server_time(self, client: TestClient, clock: FakeClock) -> None:
        """Kiosks can compare clocks with the server."""
        response = client.get("/api/v1/health")
        assert response.status_code == 200
        assert response.json()["status"] == "ok"
        assert response.json()["server_time"] == clock.now.isoformat()

    def test_unknown_route_uses_the_error_shape(self, client: TestClient) -> None:
        """Even framework 404s read {"error", "detail"}."""
        response = client.get("/api/v1/nowhere")
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
