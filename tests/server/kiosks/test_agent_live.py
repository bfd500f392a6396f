"""The agent's heartbeat sender and ``ecard agent rotate-key`` against the real server over HTTP
on 127.0.0.1 (uvicorn in a thread), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from reader_agent.cli import app as agent_app
from reader_agent.heartbeat import HeartbeatOutcome, HeartbeatSender
from reader_agent.outbox import Outbox
from reader_agent.rotation import RotationError, next_key_path, rotate_key
from reader_agent.signing import KioskKey, load_key_file, write_key_file
from reader_agent.state import Enrollment, StateDir, load_enrollment, save_enrollment
from reader_agent.uploader import Uploader, UploadOutcome
from schemas.messages import CardFacts, ReaderState, TapMode, TapPayload
from server.app import create_app
from server.caller import CLI_CALLER, UNSCOPED
from server.config import ServerSettings
from server.db import unit_of_work
from server.kiosks.health import kiosk_detail
from server.kiosks.service import revoke_kiosk
from tests.server.conftest import FakeClock
from tests.server.factories import EVENT_START, LI_CARD, ZHANG_CARD, World
from tests.server.signing import tap_payload


@pytest.fixture
def live_url(settings: ServerSettings, engine: Engine, clock: FakeClock) -> Iterator[str]:
    """The real app on 127.0.0.1 (``engine`` has migrated the database)."""
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, clock=clock), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "server stopped while starting"
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def kiosk_state(tmp_path: Path, world: World, live_url: str) -> StateDir:
    """The state directory the world's kiosk would have after ``ecard agent enroll``."""
    state = StateDir(tmp_path / "kiosk")
    state.create()
    write_key_file(state.key_path, KioskKey(world.keys.private))
    save_enrollment(
        state,
        Enrollment(
            server_url=live_url,
            kiosk_id=world.kiosk_id,
            kid=world.keys.kid,
            kiosk_name="一号机",
            venue_name="党员活动室",
            enrolled_at=EVENT_START - timedelta(days=1),
        ),
    )
    Outbox.open(state.outbox_path).close()
    return state


def store_taps(state: StateDir, world: World, *cards: CardFacts, at: datetime) -> None:
    """Taps recorded offline: numbered, signed with the current key file, kept in the outbox."""
    key = load_key_file(state.key_path)
    with Outbox.open(state.outbox_path) as outbox:
        for card_facts in cards:

            def payload(seq: int, facts: CardFacts = card_facts) -> TapPayload:
                return tap_payload(kiosk_id=world.kiosk_id, seq=seq, at=at, card_facts=facts)

            outbox.append(payload, key)


def upload_all(state: StateDir, live_url: str, clock: FakeClock) -> list[tuple[str, str | None]]:
    with Outbox.open(state.outbox_path) as outbox, httpx.Client(base_url=live_url, timeout=10) as client:
        result = Uploader(client, outbox, now=lambda: clock.now).upload_once()
        assert result.outcome is UploadOutcome.DELIVERED, result
        receipts = [outbox.receipt(seq) for seq in range(1, outbox.stats().last_seq + 1)]
    return [(r.status.value, r.code) for r in receipts if r is not None]


class TestHeartbeatToTheRealServer:
    def test_health_shows_what_the_agent_reported(
        self, kiosk_state: StateDir, world: World, live_url: str, engine: Engine, clock: FakeClock
    ) -> None:
        """Two taps waiting, the kiosk 5 s slow: the server's health says so after two heartbeats."""
        store_taps(kiosk_state, world, ZHANG_CARD, LI_CARD, at=clock.now - timedelta(minutes=3))
        with (
            Outbox.open(kiosk_state.outbox_path) as outbox,
            httpx.Client(base_url=live_url, timeout=10) as client,
        ):
            heartbeats = HeartbeatSender(
                client,
                load_key_file(kiosk_state.key_path),
                kiosk_id=world.kiosk_id,
                mode=TapMode.CHECKIN,
                agent_version="9.9",
                interval_s=30,
                outbox_stats=outbox.stats,
                reader_state=lambda: ReaderState.READY,
                reader_name="pcsc:Virtual PCD 00 00",
                now=lambda: clock.now - timedelta(seconds=5),
            )
            first, second = heartbeats.beat_once(), heartbeats.beat_once()

        assert (first.outcome, second.outcome) == (
            HeartbeatOutcome.ACKNOWLEDGED,
            HeartbeatOutcome.ACKNOWLEDGED,
        )
        assert second.ack is not None
        assert second.round_trip_ms is not None
        with Session(engine) as session:
            health = kiosk_detail(session, kiosk_id=world.kiosk_id, now=clock.now, scope=UNSCOPED).health
        assert (health.outbox_pending, health.reported_last_seq, health.oldest_pending_age_s) == (2, 2, 175.0)
        assert health.clock_offset_ms == second.ack.clock_offset_ms
        assert abs(health.clock_offset_ms - 5000) <= 1 + (health.offset_uncertainty_ms or 0)
        assert (health.agent_version, health.reader_name) == ("9.9", "pcsc:Virtual PCD 00 00")
        assert health.problems == []


class TestQuarantineAgainstTheRealServer:
    def test_a_tap_the_server_never_takes_is_set_aside_and_shown(
        self, settings: ServerSettings, engine: Engine, world: World, clock: FakeClock, tmp_path: Path
    ) -> None:
        """A tap too big for the server's body limit (413 even alone) no longer holds up the taps
        behind it: the uploader splits, the others are accepted, that one is quarantined, and the
        next heartbeat puts it on the kiosk's health for the admin."""
        clock.now = EVENT_START + timedelta(minutes=1)
        tight = settings.model_copy(update={"max_body_bytes": 1024})
        key = KioskKey(world.keys.private)

        def tap(seq: int, reader_name: str = "pcsc:ACR122") -> TapPayload:
            payload = tap_payload(kiosk_id=world.kiosk_id, seq=seq, at=EVENT_START, card_facts=ZHANG_CARD)
            return payload.model_copy(
                update={"reader": payload.reader.model_copy(update={"name": reader_name})}
            )

        with (
            TestClient(create_app(tight, clock=clock)) as client,
            Outbox.open(tmp_path / "outbox.sqlite3") as outbox,
        ):
            outbox.append(tap, key)
            outbox.append(lambda seq: tap(seq, "读卡器" * 66), key)  # ~1.7 KB as an envelope
            outbox.append(tap, key)
            uploader = Uploader(client, outbox, now=lambda: clock.now)
            result = uploader.upload_once()
            assert (result.outcome, result.sent, result.quarantined) == (UploadOutcome.DELIVERED, 2, 1)
            assert outbox.is_quarantined(2)
            assert [outbox.receipt(s) is not None for s in (1, 2, 3)] == [True, False, True]
            heartbeats = HeartbeatSender(
                client,
                key,
                kiosk_id=world.kiosk_id,
                mode=TapMode.CHECKIN,
                agent_version="9.9",
                interval_s=30,
                outbox_stats=outbox.stats,
                reader_state=lambda: ReaderState.READY,
                reader_name="pcsc:ACR122",
                now=lambda: clock.now,
            )
            assert heartbeats.beat_once().outcome is HeartbeatOutcome.ACKNOWLEDGED
        with Session(engine) as session:
            health = kiosk_detail(session, kiosk_id=world.kiosk_id, now=clock.now, scope=UNSCOPED).health
        assert (health.outbox_pending, health.outbox_quarantined, health.oldest_quarantined_seq) == (0, 1, 2)
        # Seq 2 never reached the server: a gap, explained by the quarantine beside it.
        assert [p.code for p in health.problems] == ["quarantined", "seq_gaps"]


class TestRotateKey:
    def test_offline_taps_upload_after_the_key_changed(
        self, kiosk_state: StateDir, world: World, live_url: str, clock: FakeClock
    ) -> None:
        """Two taps stored offline with the old key, then ``rotate-key``, then upload: both count,
        and the next tap, signed with the new key, too."""
        clock.now = EVENT_START + timedelta(minutes=1)
        store_taps(kiosk_state, world, ZHANG_CARD, LI_CARD, at=EVENT_START)
        old_kid = world.keys.kid

        result = CliRunner().invoke(agent_app, ["rotate-key", "--state-dir", str(kiosk_state.root)])

        assert result.exit_code == 0, result.output
        assert f"{old_kid} -> " in result.output
        new_key = load_key_file(kiosk_state.key_path)
        assert new_key.kid != old_kid
        assert load_enrollment(kiosk_state).kid == new_key.kid
        assert not next_key_path(kiosk_state).exists()
        store_taps(kiosk_state, world, ZHANG_CARD, at=EVENT_START + timedelta(minutes=1))
        assert upload_all(kiosk_state, live_url, clock) == [
            ("accepted", None),
            ("accepted", None),
            ("accepted", None),
        ]

    def test_a_lost_answer_is_finished_by_running_it_again(
        self, kiosk_state: StateDir, world: World, live_url: str, clock: FakeClock
    ) -> None:
        """The server rotated but its answer was lost: ``run`` refuses until ``rotate-key`` is
        run again, which the server answers the same way."""

        class LoseAnswer(httpx.HTTPTransport):
            def handle_request(self, request: httpx.Request) -> httpx.Response:
                response = super().handle_request(request)
                response.read()
                raise httpx.ReadError("connection reset after the server answered")

        with (
            httpx.Client(base_url=live_url, transport=LoseAnswer(), timeout=10) as client,
            pytest.raises(RotationError) as excinfo,
        ):
            rotate_key(client, state=kiosk_state, now=lambda: clock.now)
        assert excinfo.value.code == "server_unreachable"
        assert next_key_path(kiosk_state).exists()

        refused = CliRunner().invoke(
            agent_app, ["run", "--reader", "scripted", "--state-dir", str(kiosk_state.root)]
        )
        assert refused.exit_code == 1
        assert "rotation_unfinished" in refused.output

        with httpx.Client(base_url=live_url, timeout=10) as client:
            rotation = rotate_key(client, state=kiosk_state, now=lambda: clock.now)
        assert rotation.previous_kid == world.keys.kid
        assert load_key_file(kiosk_state.key_path).kid == rotation.kid == load_enrollment(kiosk_state).kid

    def test_revoked_kiosk_cannot_rotate(
        self, kiosk_state: StateDir, live_url: str, world: World, engine: Engine, clock: FakeClock
    ) -> None:
        with unit_of_work(engine) as session:
            revoke_kiosk(session, kiosk_id=world.kiosk_id, now=clock.now, caller=CLI_CALLER)
        result = CliRunner().invoke(agent_app, ["rotate-key", "--state-dir", str(kiosk_state.root)])
        assert result.exit_code == 1
        assert "kiosk_revoked" in result.output
        assert load_key_file(kiosk_state.key_path).kid == world.keys.kid  # nothing changed locally
