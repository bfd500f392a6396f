"""A small scene with evidence: taps uploaded over HTTP to the real app (which seals them with the
evidence key in its data directory), a manual entry, and the CLI that checks it all."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import col, select
from typer.testing import CliRunner

from schemas.messages import TapBatch
from server.attendance.service import record_manual_attendance
from server.caller import CLI_CALLER
from server.cli import admin_app
from server.config import ServerSettings
from server.db import unit_of_work
from server.records.attendance import Attendance
from server.records.taps import Tap
from tests.server.conftest import TEST_SECRET, FakeClock
from tests.server.factories import EVENT_START, LI_CARD, STRANGER_CARD, ZHANG_CARD, World


@dataclass
class Scene:
    world: World
    taps: dict[str, int]  # zhang_in, stranger, li_in, zhang_out
    attendance: dict[str, int]  # 张三明, 李四, 王五 (manual)


@pytest.fixture
def scene(client: TestClient, world: World, clock: FakeClock, engine: Engine) -> Scene:
    """张三明 signs in and out, 李四 signs in, a stranger's card is tapped between them, and
    王五 is entered by hand (audited)."""
    clock.now = EVENT_START + timedelta(minutes=5)
    first = [
        world.payload(ZHANG_CARD, at=EVENT_START),
        world.payload(STRANGER_CARD, at=EVENT_START + timedelta(minutes=1)),
        world.payload(LI_CARD, at=EVENT_START + timedelta(minutes=2)),
    ]
    _post(client, [world.keys.seal(p) for p in first])
    clock.now = EVENT_START + timedelta(minutes=95)
    _post(client, [world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START + timedelta(minutes=90)))])
    with unit_of_work(engine) as session:
        record_manual_attendance(
            session,
            event_id=world.event_id,
            member_id=world.members["王五"],
            reason="忘带卡",
            at=None,
            caller=CLI_CALLER,
            now=EVENT_START + timedelta(minutes=100),
        )
        taps = session.exec(select(Tap.id).order_by(col(Tap.id))).all()
        rows = session.exec(select(Attendance.member_id, Attendance.id)).all()
    names = {member_id: name for name, member_id in world.members.items()}
    return Scene(
        world=world,
        taps=dict(
            zip(
                ["zhang_in", "stranger", "li_in", "zhang_out"],
                [t for t in taps if t is not None],
                strict=True,
            )
        ),
        attendance={names[member_id]: row_id for member_id, row_id in rows if row_id is not None},
    )


def _post(client: TestClient, envelopes: list[Any]) -> None:
    response = client.post("/api/v1/taps", json=TapBatch(envelopes=envelopes).model_dump(mode="json"))
    assert response.status_code == 200, response.text


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch, settings: ServerSettings) -> Any:
    """Run ``ecard admin …`` against the test database with the server's data dir (the evidence
    key the app created) and secret; returns (exit code, parsed JSON or the text)."""
    for name in ("ECARD_DATABASE_URL", "ECARD_EVIDENCE_KEY", "ECARD_TIMEZONE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ECARD_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("ECARD_SECRET_KEY", TEST_SECRET)
    runner = CliRunner()

    def run(*args: str, as_json: bool = True) -> tuple[int, Any]:
        extra = ["--json"] if as_json else []
        result = runner.invoke(admin_app, [*args, *extra, "--db", settings.database_url])
        if as_json:
            return result.exit_code, json.loads(result.stdout)
        return result.exit_code, result.stdout

    return run


def evidence_key_file(settings: ServerSettings) -> Path:
    return settings.data_dir / "evidence.key"
