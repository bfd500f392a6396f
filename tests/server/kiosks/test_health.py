"""Signed heartbeats (``POST /api/v1/kiosks/heartbeat``) and the kiosk health they feed
(``GET /api/v1/kiosks``): clock offset, outbox depth, seq gaps, silence, scoping."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from schemas.messages import HeartbeatAck, ReaderState, SignedEnvelope, b64url_encode
from server.caller import CLI_CALLER, UNSCOPED
from server.db import unit_of_work
from server.keyring import Keyring
from server.kiosks.health import describe_duration, kiosk_detail, list_kiosk_health
from server.kiosks.service import revoke_kiosk
from server.records.audit import AuditEntry
from server.records.kiosks import Kiosk
from server.vocabulary import TokenRole
from tests.server.conftest import FakeClock
from tests.server.factories import EVENT_START, ZHANG_CARD, World, upload
from tests.server.kiosks.messages import bearer, heartbeat
from tests.server.signing import KioskKeys

HEARTBEAT = "/api/v1/kiosks/heartbeat"
KIOSKS = "/api/v1/kiosks"


def post(client: TestClient, envelope: SignedEnvelope) -> tuple[int, dict[str, object]]:
    response = client.post(
        HEARTBEAT, content=envelope.model_dump_json(), headers={"Content-Type": "application/json"}
    )
    return response.status_code, response.json()


def problem_codes(engine: Engine, world: World, clock: FakeClock) -> list[str]:
    with Session(engine) as session:
        detail = kiosk_detail(session, kiosk_id=world.kiosk_id, now=clock.now, scope=UNSCOPED)
    return [p.code for p in detail.health.problems]


class TestHeartbeat:
    def test_clock_offset_accounts_for_half_the_round_trip(
        self, client: TestClient, engine: Engine, world: World, clock: FakeClock
    ) -> None:
        """Kiosk 90 s slow, previous round trip 200 ms: offset 89.9 s, good to ±100 ms."""
        envelope = heartbeat(
            world.keys, kiosk_id=world.kiosk_id, sent_at=clock.now - timedelta(seconds=90), round_trip_ms=200
        )
        status, body = post(client, envelope)

        assert status == 200, body
        ack = HeartbeatAck.model_validate(body)
        assert ack.server_time == clock.now
        assert ack.clock_offset_ms == 89_900
        with Session(engine) as session:
            health = kiosk_detail(session, kiosk_id=world.kiosk_id, now=clock.now, scope=UNSCOPED).health
        assert (health.clock_offset_ms, health.offset_uncertainty_ms) == (89_900, 100)
        assert health.last_seen_at == clock.now
        assert health.agent_version == "1.2.3"
        assert [(p.code, p.message) for p in health.problems] == [("clock_offset", "终端时钟慢了1分钟")]

    def test_first_heartbeat_has_no_round_trip_yet(
        self, client: TestClient, engine: Engine, world: World, clock: FakeClock
    ) -> None:
        """Without a measured round trip the raw difference is the estimate; uncertainty unknown."""
        status, body = post(
            client, heartbeat(world.keys, kiosk_id=world.kiosk_id, sent_at=clock.now + timedelta(seconds=2))
        )
        assert status == 200
        assert body["clock_offset_ms"] == -2000
        with Session(engine) as session:
            health = kiosk_detail(session, kiosk_id=world.kiosk_id, now=clock.now, scope=UNSCOPED).health
        assert health.offset_uncertainty_ms is None
        assert health.problems == []

    def test_replayed_heartbeat_is_refused(self, client: TestClient, world: World, clock: FakeClock) -> None:
        """The same signed heartbeat twice, or an older counter of the same boot: 409 stale_heartbeat."""
        first = heartbeat(world.keys, kiosk_id=world.kiosk_id, sent_at=clock.now, counter=5)
        assert post(client, first)[0] == 200
        status, body = post(client, first)
        assert (status, body["error"]) == (409, "stale_heartbeat")
        older = heartbeat(world.keys, kiosk_id=world.kiosk_id, sent_at=clock.now, counter=4)
        assert post(client, older)[0] == 409
        assert (
            post(client, heartbeat(world.keys, kiosk_id=world.kiosk_id, sent_at=clock.now, counter=6))[0]
            == 200
        )

    def test_a_restarted_agent_is_heard_but_an_old_boot_is_not(
        self, client: TestClient, world: World, clock: FakeClock
    ) -> None:
        """A new boot with a sane clock is accepted; a captured heartbeat of an earlier boot is not."""
        old_boot = heartbeat(
            world.keys, kiosk_id=world.kiosk_id, sent_at=clock.now, boot_id="a" * 32, counter=9
        )
        assert post(client, old_boot)[0] == 200
        clock.advance(minutes=30)
        new_boot = heartbeat(world.keys, kiosk_id=world.kiosk_id, sent_at=clock.now, boot_id="b" * 32)
        assert post(client, new_boot)[0] == 200
        clock.advance(minutes=30)
        status, body = post(client, old_boot)
        assert (status, body["error"]) == (409, "stale_heartbeat")

    def test_restart_with_a_fixed_clock_is_not_locked_out(
        self, client: TestClient, world: World, clock: FakeClock
    ) -> None:
        """A kiosk whose clock ran a year ahead, then was fixed and restarted, is heard again."""
        ahead = heartbeat(
            world.keys, kiosk_id=world.kiosk_id, sent_at=clock.now + timedelta(days=365), boot_id="a" * 32
        )
        assert post(client, ahead)[0] == 200
        fixed = heartbeat(world.keys, kiosk_id=world.kiosk_id, sent_at=clock.now, boot_id="c" * 32)
        assert post(client, fixed)[0] == 200

    def test_refusals(self, engine: Engine, client: TestClient, world: World, clock: FakeClock) -> None:
        """Unknown key, bad signature, another kiosk's id, a tap payload, a revoked kiosk."""
        stranger = heartbeat(KioskKeys(), kiosk_id=world.kiosk_id, sent_at=clock.now)
        assert post(client, stranger)[1]["error"] == "unknown_kiosk"

        genuine = heartbeat(world.keys, kiosk_id=world.kiosk_id, sent_at=clock.now)
        forged = genuine.model_copy(update={"sig": b64url_encode(KioskKeys().private.sign(b"x"))})
        assert post(client, forged) == (401, {"error": "bad_signature", "detail": "签名无效"})

        other = heartbeat(world.keys, kiosk_id="kiosk-other", sent_at=clock.now)
        assert post(client, other)[1]["error"] == "kiosk_mismatch"

        tap = world.keys.seal(world.payload(ZHANG_CARD, at=clock.now))
        assert post(client, tap)[1]["error"] == "malformed"

        with unit_of_work(engine) as session:
            revoke_kiosk(session, kiosk_id=world.kiosk_id, now=clock.now, caller=CLI_CALLER)
        status, body = post(client, genuine)
        assert (status, body["error"]) == (409, "kiosk_revoked")


class TestProblems:
    def test_healthy_kiosk_and_waiting_kiosk(
        self, client: TestClient, engine: Engine, world: World, clock: FakeClock
    ) -> None:
        """The enrolled kiosk with a fresh heartbeat has no problems; the unenrolled one waits."""
        assert post(client, heartbeat(world.keys, kiosk_id=world.kiosk_id, sent_at=clock.now))[0] == 200
        with Session(engine) as session:
            healths = list_kiosk_health(session, now=clock.now, scope=UNSCOPED)
        by_name = {h.name: h for h in healths}
        assert by_name["一号机"].problems == []
        assert [p.code for p in by_name["二号机"].problems] == ["not_enrolled"]
        assert [h.name for h in healths] == ["二号机", "一号机"]  # problems first

    def test_never_seen(self, engine: Engine, world: World, clock: FakeClock) -> None:
        assert problem_codes(engine, world, clock) == ["never_seen"]

    def test_silent_after_three_missed_heartbeats(
        self, client: TestClient, engine: Engine, world: World, clock: FakeClock
    ) -> None:
        """Interval 60 s: quiet for 2 min is fine, for 4 min is 'silent'."""
        post(client, heartbeat(world.keys, kiosk_id=world.kiosk_id, sent_at=clock.now))
        clock.advance(minutes=2)
        assert problem_codes(engine, world, clock) == []
        clock.advance(minutes=2)
        with Session(engine) as session:
            health = kiosk_detail(session, kiosk_id=world.kiosk_id, now=clock.now, scope=UNSCOPED).health
        assert [(p.code, p.message) for p in health.problems] == [("silent", "已4分钟没有心跳")]

    def test_backlog_and_reader(
        self, client: TestClient, engine: Engine, world: World, clock: FakeClock
    ) -> None:
        """Taps waiting 15 minutes and a reader that is gone are both reported."""
        envelope = heartbeat(
            world.keys,
            kiosk_id=world.kiosk_id,
            sent_at=clock.now,
            pending=7,
            oldest_pending_age_s=900,
            reader_state=ReaderState.DISCONNECTED,
        )
        post(client, envelope)
        with Session(engine) as session:
            health = kiosk_detail(session, kiosk_id=world.kiosk_id, now=clock.now, scope=UNSCOPED).health
        assert [(p.code, p.message) for p in health.problems] == [
            ("upload_backlog", "7条刷卡记录未上传，最早的已等待15分钟"),
            ("reader", "读卡器已断开，正在重连"),
        ]
        assert (health.outbox_pending, health.reader_state) == (7, ReaderState.DISCONNECTED)

    def test_quarantined_taps_tell_the_admin_what_to_do(
        self, client: TestClient, engine: Engine, world: World, clock: FakeClock
    ) -> None:
        """Taps the kiosk set aside are stored from its heartbeat and shown with the next step."""
        envelope = heartbeat(
            world.keys, kiosk_id=world.kiosk_id, sent_at=clock.now, quarantined=2, oldest_quarantined_seq=41
        )
        assert post(client, envelope)[0] == 200
        with Session(engine) as session:
            health = kiosk_detail(session, kiosk_id=world.kiosk_id, now=clock.now, scope=UNSCOPED).health
        assert (health.outbox_quarantined, health.oldest_quarantined_seq) == (2, 41)
        ((code, message),) = [(p.code, p.message) for p in health.problems]
        assert code == "quarantined"
        assert message.startswith("2条刷卡记录被服务器反复拒收，已在签到机上隔离保存（最早编号 41）")
        assert "签到机日志" in message

    def test_a_heartbeat_without_quarantine_fields_still_counts(
        self, client: TestClient, engine: Engine, world: World, clock: FakeClock
    ) -> None:
        """An agent from before quarantine existed sends neither field: nothing is quarantined."""
        current = heartbeat(world.keys, kiosk_id=world.kiosk_id, sent_at=clock.now).payload_bytes()
        fields = json.loads(current)
        del fields["outbox_quarantined"], fields["oldest_quarantined_seq"]
        older = world.keys.sign_bytes(json.dumps(fields).encode())
        assert post(client, older)[0] == 200
        with Session(engine) as session:
            health = kiosk_detail(session, kiosk_id=world.kiosk_id, now=clock.now, scope=UNSCOPED).health
        assert (health.outbox_quarantined, health.oldest_quarantined_seq, health.problems) == (0, None, [])


class TestSeqGaps:
    def test_gaps_below_the_highest_received_seq(
        self, client: TestClient, engine: Engine, keyring: Keyring, world: World, clock: FakeClock
    ) -> None:
        """Seqs 1, 2, 5, 6, 9 received: 4 missing (3–4, 7–8); 10–11 still on the kiosk."""
        envelopes = [
            world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START, seq=s)) for s in (1, 2, 5, 6, 9)
        ]
        upload(engine, keyring, envelopes, received_at=EVENT_START + timedelta(minutes=1))
        clock.now = EVENT_START + timedelta(minutes=2)
        post(
            client, heartbeat(world.keys, kiosk_id=world.kiosk_id, sent_at=clock.now, last_seq=11, pending=2)
        )

        with Session(engine) as session:
            detail = kiosk_detail(session, kiosk_id=world.kiosk_id, now=clock.now, scope=UNSCOPED)
        health = detail.health
        assert (health.received_max_seq, health.received_count, health.seq_gaps) == (9, 5, 4)
        assert health.reported_last_seq == 11
        assert [(r.first, r.last) for r in detail.missing_seqs] == [(3, 4), (7, 8)]
        assert [(p.code, p.message) for p in health.problems] == [
            ("seq_gaps", "缺少4条刷卡记录（编号不连续）")
        ]

    def test_missing_first_seqs(
        self, engine: Engine, keyring: Keyring, world: World, clock: FakeClock
    ) -> None:
        """Taps 1–2 never arrived but 3 did: the leading range is reported too."""
        upload(
            engine,
            keyring,
            [world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START, seq=3))],
            received_at=EVENT_START,
        )
        with Session(engine) as session:
            detail = kiosk_detail(session, kiosk_id=world.kiosk_id, now=clock.now, scope=UNSCOPED)
        assert [(r.first, r.last) for r in detail.missing_seqs] == [(1, 2)]
        assert detail.health.seq_gaps == 2


class TestKioskApi:
    def test_list_is_scoped_to_the_callers_organisations(
        self, client: TestClient, engine: Engine, keyring: Keyring, world: World, clock: FakeClock
    ) -> None:
        """The venue belongs to the committee: its token sees both kiosks, a branch token none."""
        committee = bearer(
            engine, keyring, role=TokenRole.SECRETARY, org_id=world.committee_id, now=clock.now
        )
        branch = bearer(engine, keyring, role=TokenRole.SECRETARY, org_id=world.branch_id, now=clock.now)

        listed = client.get(KIOSKS, headers=committee)
        assert listed.status_code == 200
        assert {k["name"] for k in listed.json()} == {"一号机", "二号机"}
        assert client.get(KIOSKS, headers=branch).json() == []
        assert client.get(f"{KIOSKS}/{world.kiosk_id}", headers=branch).status_code == 404
        assert client.get(KIOSKS).status_code == 401

    def test_revoke_over_the_api_is_audited(
        self, client: TestClient, engine: Engine, keyring: Keyring, world: World, clock: FakeClock
    ) -> None:
        """Revoking stops the kiosk and leaves an audit entry with the reason; outsiders get 404."""
        branch = bearer(engine, keyring, role=TokenRole.SECRETARY, org_id=world.branch_id, now=clock.now)
        admin = bearer(engine, keyring, role=TokenRole.ADMIN, org_id=None, now=clock.now)
        url = f"{KIOSKS}/{world.kiosk_id}/revoke"
        assert client.post(url, json={"reason": "设备丢失"}, headers=branch).status_code == 404

        response = client.post(url, json={"reason": "设备丢失"}, headers=admin)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "revoked"
        shown = client.get(f"{KIOSKS}/{world.kiosk_id}", headers=admin).json()
        assert shown["health"]["status"] == "revoked"
        assert shown["health"]["problems"] == []
        with Session(engine) as session:
            entry = session.exec(select(AuditEntry).where(AuditEntry.action == "kiosk.revoke")).one()
            kiosk = session.get(Kiosk, world.kiosk_id)
        assert (entry.object_id, entry.reason) == (world.kiosk_id, "设备丢失")
        assert entry.actor.startswith("token:")
        assert kiosk is not None
        assert kiosk.revoked_at == clock.now


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5, "5秒"),
        (59, "59秒"),
        (60, "1分钟"),
        (3600, "1小时"),
        (3660 + 1200, "1小时21分钟"),
        (3 * 86400, "3天"),
    ],
)
def test_describe_duration(seconds: int, text: str) -> None:
    assert describe_duration(timedelta(seconds=seconds)) == text
