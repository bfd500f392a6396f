"""Enrollment as a replacement device: the new outbox continues the kiosk's numbering."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx

from reader_agent.enrollment import enroll
from reader_agent.outbox import Outbox
from reader_agent.state import StateDir
from schemas import EnrollRequest, EnrollResponse
from schemas.messages import b64url_decode, key_id


def _server_answering(first_seq: int) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        asked = EnrollRequest.model_validate_json(request.content)
        granted = EnrollResponse(
            kiosk_id="K-000007",
            kid=key_id(b64url_decode(asked.public_key)),
            kiosk_name="一楼签到机",
            venue_name="党群服务中心",
            server_time=datetime(2026, 11, 23, tzinfo=UTC),
            first_seq=first_seq,
        )
        return httpx.Response(200, content=granted.model_dump_json())

    return httpx.MockTransport(handle)


def test_replacement_device_starts_where_the_old_one_stopped(tmp_path: Path) -> None:
    """A kiosk re-enrolled on new hardware numbers its first tap after the server's last seq."""
    state = StateDir(tmp_path / "state")
    with httpx.Client(transport=_server_answering(first_seq=58), base_url="http://server") as client:
        enroll(client, state=state, server_url="http://server", code="ABCD-EFGH", agent_version="test")
    with Outbox.open(state.outbox_path) as outbox:
        assert outbox.stats().last_seq == 57
    assert json.loads(state.enrollment_path.read_text())["kiosk_id"] == "K-000007"


def test_new_kiosk_starts_at_one(tmp_path: Path) -> None:
    """A brand-new kiosk's first tap is seq 1."""
    state = StateDir(tmp_path / "state")
    with httpx.Client(transport=_server_answering(first_seq=1), base_url="http://server") as client:
        enroll(client, state=state, server_url="http://server", code="ABCD-EFGH", agent_version="test")
    with Outbox.open(state.outbox_path) as outbox:
        assert outbox.stats().last_seq == 0
