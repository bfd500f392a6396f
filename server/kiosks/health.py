"""Kiosk heartbeats, and the health view built from them and from the taps the server received.

**Clock offset.** A heartbeat carries the kiosk's send time ``t1``; the server receives it at
``t2``. The one-way delay is unknown; assuming a symmetric path it is half the round trip the
kiosk measured for its previous heartbeat, so ``offset = t2 − t1 − rtt/2`` (server minus kiosk),
good to ``± rtt/2``. The first heartbeat of a boot has no round trip yet: the delay is taken as 0
and the uncertainty is unknown (None).

**Replays.** Heartbeats are signed, but a signed heartbeat could be sent again to make a dead
kiosk look alive. Within one agent run (``boot_id``) the ``counter`` must grow. A new boot is
accepted when it is newer than the stored heartbeat by the kiosk clock, or when its clock is
within the allowed skew of the server's (a kiosk whose clock was fixed and restarted must not be
locked out); an old heartbeat of a previous boot is neither.

**Seq gaps.** Every tap that claimed a seq at the server is a ``Tap`` row with ``claimed_seq``
set, unique per kiosk. Below the highest received seq, ``max − count`` seqs never arrived; the
ranges are found with one window query (``lag``), not by walking the seqs in Python. Seqs above
the highest received one are still waiting on the kiosk (the heartbeat's ``outbox_pending``).

**Quarantine.** A tap the server kept refusing as a batch (an answer other than a receipt) is set
aside on the kiosk so that it stops holding up the taps behind it; it is kept there, never
deleted. The heartbeat reports how many (``outbox_quarantined``) and the oldest one's seq, and the
health view shows them as a problem with what to do (:func:`quarantine_message`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import Select

from schemas.messages import HeartbeatAck, HeartbeatPayload, ReaderState, SignedEnvelope
from server.caller import Scope
from server.errors import KioskNotFound, StaleHeartbeat
from server.kiosks.authentication import Rejection, authenticate, refusal
from server.kiosks.schemas import HealthProblem, KioskDetail, KioskHealth, KioskKeyPublic, SeqRange
from server.records.kiosks import Kiosk, KioskHeartbeat, KioskKey
from server.records.taps import Tap
from server.records.venues import Venue
from server.vocabulary import KioskStatus

_READER_PROBLEMS: dict[ReaderState, str] = {
    ReaderState.STARTING: "读卡器尚未就绪",
    ReaderState.UNAVAILABLE: "读卡器不可用（未连接或无权限）",
    ReaderState.DISCONNECTED: "读卡器已断开，正在重连",
    ReaderState.FAILED: "读卡器故障",
}


@dataclass(frozen=True)
class HealthThresholds:
    """When a kiosk's numbers become a problem worth showing."""

    silent_after_missed: int = 3  # heartbeats missed in a row
    min_silence: timedelta = timedelta(minutes=2)
    clock_offset: timedelta = timedelta(seconds=30)
    backlog_age: timedelta = timedelta(minutes=10)


DEFAULT_THRESHOLDS = HealthThresholds()


def record_heartbeat(
    session: Session, *, envelope: SignedEnvelope, received_at: datetime, max_clock_skew: timedelta
) -> HeartbeatAck:
    """Verify a signed heartbeat and keep it as the kiosk's latest health report.

    Raises:
        UnknownKioskKey, BadSignature: the signature is not a kiosk's.
        MalformedMessage: the payload is not a HeartbeatPayload.
        KioskMismatch: the payload names another kiosk than the key's.
        KioskRevoked: the kiosk is revoked.
        KeyRetired: signed with a key the kiosk has rotated out.
        StaleHeartbeat: not newer than the stored heartbeat (see the module docstring).
    """
    # Steps 1–6 of server.kiosks.authentication; the staleness check below is this message's own
    # guard against replays, as the (kiosk, seq) checks are a tap's.
    signed = authenticate(
        session, envelope, HeartbeatPayload.model_validate_json, now=received_at, refuse_retired_key=True
    )
    if isinstance(signed, Rejection):
        raise refusal(signed, revoked_message="终端已停用")
    kiosk, payload = signed.kiosk, signed.payload

    latest = session.get(KioskHeartbeat, kiosk.id)
    if latest is not None and not _is_newer(payload, latest, received_at, max_clock_skew):
        raise StaleHeartbeat()
    delay_ms = (payload.previous_round_trip_ms or 0) / 2
    offset_ms = round((received_at - payload.sent_at) / timedelta(milliseconds=1) - delay_ms)
    uncertainty_ms = (
        None if payload.previous_round_trip_ms is None else (payload.previous_round_trip_ms + 1) // 2
    )
    report = KioskHeartbeat(
        kiosk_id=kiosk.id,
        received_at=received_at,
        sent_at=payload.sent_at,
        boot_id=payload.boot_id,
        counter=payload.counter,
        interval_s=payload.interval_s,
        clock_offset_ms=offset_ms,
        offset_uncertainty_ms=uncertainty_ms,
        mode=payload.mode,
        outbox_pending=payload.outbox_pending,
        oldest_pending_age_s=payload.oldest_pending_age_s,
        outbox_quarantined=payload.outbox_quarantined,
        oldest_quarantined_seq=payload.oldest_quarantined_seq,
        last_seq=payload.last_seq,
        agent_version=payload.agent_version,
        reader_state=payload.reader_state,
        reader_name=payload.reader_name,
    )
    if latest is None:
        session.add(report)
    else:
        latest.sqlmodel_update(report.model_dump())
        session.add(latest)
    kiosk.agent_version = payload.agent_version
    session.add(kiosk)
    session.flush()
    return HeartbeatAck(server_time=received_at, clock_offset_ms=offset_ms)


def list_kiosk_health(
    session: Session,
    *,
    now: datetime,
    scope: Scope,
    thresholds: HealthThresholds = DEFAULT_THRESHOLDS,
) -> list[KioskHealth]:
    """Every kiosk at a venue in *scope*, with its health; kiosks with problems first."""
    healths = _healths(session, _kiosks_query(scope), now=now, thresholds=thresholds)
    return sorted(
        healths, key=lambda h: (h.status == KioskStatus.REVOKED, not h.problems, h.name, h.kiosk_id)
    )


def kiosk_detail(
    session: Session,
    *,
    kiosk_id: str,
    now: datetime,
    scope: Scope,
    thresholds: HealthThresholds = DEFAULT_THRESHOLDS,
    missing_limit: int = 20,
) -> KioskDetail:
    """One kiosk's health, its first missing seq ranges and its key history.

    Raises:
        KioskNotFound: no such kiosk, or not at a venue in *scope*.
    """
    found = _healths(
        session, _kiosks_query(scope).where(col(Kiosk.id) == kiosk_id), now=now, thresholds=thresholds
    )
    if not found:
        raise KioskNotFound(f"终端 {kiosk_id} 不存在")
    keys = session.exec(
        select(KioskKey).where(KioskKey.kiosk_id == kiosk_id).order_by(col(KioskKey.valid_from).desc())
    ).all()
    return KioskDetail(
        health=found[0],
        missing_seqs=missing_seq_ranges(session, kiosk_id=kiosk_id, limit=missing_limit),
        keys=[
            KioskKeyPublic(kid=k.kid, valid_from=k.valid_from, retired_at=k.retired_at, last_seq=k.last_seq)
            for k in keys
        ],
    )


def missing_seq_ranges(session: Session, *, kiosk_id: str, limit: int) -> list[SeqRange]:
    """The first *limit* runs of seqs below the highest received one that never arrived."""
    numbered = (
        select(
            col(Tap.claimed_seq).label("seq"),
            func.lag(Tap.claimed_seq, 1, 0).over(order_by=col(Tap.claimed_seq)).label("previous"),
        )
        .where(Tap.kiosk_id == kiosk_id, col(Tap.claimed_seq).is_not(None))
        .subquery()
    )
    gaps = (
        select(numbered.c.previous + 1, numbered.c.seq - 1)
        .where(numbered.c.seq - numbered.c.previous > 1)
        .order_by(numbered.c.seq)
        .limit(limit)
    )
    return [SeqRange(first=first, last=last) for first, last in session.exec(gaps).all()]


def _is_newer(
    payload: HeartbeatPayload, latest: KioskHeartbeat, received_at: datetime, max_clock_skew: timedelta
) -> bool:
    if payload.boot_id == latest.boot_id:
        return payload.counter > latest.counter
    return payload.sent_at > latest.sent_at or abs(received_at - payload.sent_at) <= max_clock_skew


def _kiosks_query(scope: Scope) -> Select[Kiosk, Venue, KioskHeartbeat]:
    return (
        select(Kiosk, Venue, KioskHeartbeat)
        .join(Venue, col(Venue.id) == col(Kiosk.venue_id))
        .outerjoin(KioskHeartbeat, col(KioskHeartbeat.kiosk_id) == col(Kiosk.id))
        .where(scope.condition(Venue.org_id))
        .order_by(col(Kiosk.created_at), col(Kiosk.id))
    )


def _healths(
    session: Session,
    query: Select[Kiosk, Venue, KioskHeartbeat],
    *,
    now: datetime,
    thresholds: HealthThresholds,
) -> list[KioskHealth]:
    rows = session.exec(query).all()
    kiosk_ids = [kiosk.id for kiosk, _, _ in rows]
    # One grouped query for all listed kiosks: each group is a range scan of the unique
    # (kiosk_id, claimed_seq) index, so the cost follows the listed kiosks, not the whole tap table.
    seq_stats = {
        kiosk_id: (max_seq, count)
        for kiosk_id, max_seq, count in session.exec(
            select(Tap.kiosk_id, func.max(Tap.claimed_seq), func.count(col(Tap.claimed_seq)))
            .where(col(Tap.kiosk_id).in_(kiosk_ids), col(Tap.claimed_seq).is_not(None))
            .group_by(col(Tap.kiosk_id))
        ).all()
    }
    kids = [kiosk.kid for kiosk, _, _ in rows if kiosk.kid is not None]
    key_since = dict(
        session.exec(select(KioskKey.kid, KioskKey.valid_from).where(col(KioskKey.kid).in_(kids))).all()
    )
    return [
        _health(
            kiosk,
            venue,
            heartbeat,
            *seq_stats.get(kiosk.id, (None, 0)),
            key_since.get(kiosk.kid) if kiosk.kid else None,
            now=now,
            thresholds=thresholds,
        )
        for kiosk, venue, heartbeat in rows
    ]


def _health(
    kiosk: Kiosk,
    venue: Venue,
    heartbeat: KioskHeartbeat | None,
    received_max_seq: int | None,
    received_count: int | None,
    key_since: datetime | None,
    *,
    now: datetime,
    thresholds: HealthThresholds,
) -> KioskHealth:
    count = received_count or 0
    gaps = (received_max_seq or 0) - count
    assert venue.id is not None
    health = KioskHealth(
        kiosk_id=kiosk.id,
        name=kiosk.name,
        venue_id=venue.id,
        venue_name=venue.name,
        org_id=venue.org_id,
        status=kiosk.status,
        kid=kiosk.kid,
        enrolled_at=kiosk.enrolled_at,
        revoked_at=kiosk.revoked_at,
        key_since=key_since,
        last_seen_at=kiosk.last_seen_at,
        heartbeat_at=heartbeat.received_at if heartbeat else None,
        heartbeat_interval_s=heartbeat.interval_s if heartbeat else None,
        mode=heartbeat.mode if heartbeat else None,
        agent_version=kiosk.agent_version,
        reader_state=heartbeat.reader_state if heartbeat else None,
        reader_name=heartbeat.reader_name if heartbeat else "",
        clock_offset_ms=heartbeat.clock_offset_ms if heartbeat else None,
        offset_uncertainty_ms=heartbeat.offset_uncertainty_ms if heartbeat else None,
        outbox_pending=heartbeat.outbox_pending if heartbeat else None,
        oldest_pending_age_s=heartbeat.oldest_pending_age_s if heartbeat else None,
        outbox_quarantined=heartbeat.outbox_quarantined if heartbeat else None,
        oldest_quarantined_seq=heartbeat.oldest_quarantined_seq if heartbeat else None,
        reported_last_seq=heartbeat.last_seq if heartbeat else None,
        received_max_seq=received_max_seq,
        received_count=count,
        seq_gaps=gaps,
        problems=[],
    )
    health.problems = _problems(health, now=now, thresholds=thresholds)
    return health


def _problems(health: KioskHealth, *, now: datetime, thresholds: HealthThresholds) -> list[HealthProblem]:
    if health.status == KioskStatus.REVOKED:
        return []
    if health.status == KioskStatus.PENDING:
        return [
            HealthProblem(code="not_enrolled", message="等待登记：尚未在终端上使用登记码", level="warning")
        ]
    problems: list[HealthProblem] = []
    if health.heartbeat_at is None or health.heartbeat_interval_s is None:
        problems.append(HealthProblem(code="never_seen", message="从未收到心跳", level="warning"))
    else:
        silence = now - health.heartbeat_at
        allowed = max(
            timedelta(seconds=health.heartbeat_interval_s * thresholds.silent_after_missed),
            thresholds.min_silence,
        )
        if silence > allowed:
            problems.append(HealthProblem(code="silent", message=f"已{describe_duration(silence)}没有心跳"))
    offset_limit_ms = thresholds.clock_offset / timedelta(milliseconds=1)
    if health.clock_offset_ms is not None and abs(health.clock_offset_ms) > offset_limit_ms:
        direction = "慢" if health.clock_offset_ms > 0 else "快"
        drift = describe_duration(timedelta(milliseconds=abs(health.clock_offset_ms)))
        problems.append(HealthProblem(code="clock_offset", message=f"终端时钟{direction}了{drift}"))
    if (
        health.outbox_pending
        and health.oldest_pending_age_s is not None
        and health.oldest_pending_age_s > thresholds.backlog_age.total_seconds()
    ):
        age = describe_duration(timedelta(seconds=health.oldest_pending_age_s))
        problems.append(
            HealthProblem(
                code="upload_backlog", message=f"{health.outbox_pending}条刷卡记录未上传，最早的已等待{age}"
            )
        )
    if health.outbox_quarantined:
        message = quarantine_message(health.outbox_quarantined, health.oldest_quarantined_seq)
        problems.append(HealthProblem(code="quarantined", message=message))
    if health.seq_gaps > 0:
        problems.append(
            HealthProblem(code="seq_gaps", message=f"缺少{health.seq_gaps}条刷卡记录（编号不连续）")
        )
    if health.reader_state is not None and health.reader_state != ReaderState.READY:
        problems.append(HealthProblem(code="reader", message=_READER_PROBLEMS[health.reader_state]))
    return problems


def quarantine_message(count: int, oldest_seq: int | None) -> str:
    """What the admin reads about a kiosk's quarantined taps, and what to do about them."""
    oldest = f"（最早编号 {oldest_seq}）" if oldest_seq is not None else ""
    return (
        f"{count}条刷卡记录被服务器反复拒收，已在签到机上隔离保存{oldest}，其余记录照常上传："
        "请查看签到机日志中的拒收原因，核对签到机与服务器的程序版本，"
        "处理后在签到机上运行 ecard agent requeue 重新上传"
    )


def describe_duration(span: timedelta) -> str:
    """A short Chinese duration: 45秒, 12分钟, 3小时20分钟, 2天."""
    seconds = int(span.total_seconds())
    if seconds < 60:
        return f"{seconds}秒"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}分钟"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}小时{minutes}分钟" if minutes else f"{hours}小时"
    return f"{hours // 24}天"
