"""The server's scheduled jobs: what runs, how often, and a record of every run.

Every server process starts :func:`run_schedule` in its lifespan; :mod:`server.jobs` makes each
round run once per deployment (an advisory lock on PostgreSQL), so no cron is needed.
``ecard admin jobs list`` shows the jobs and their last runs, ``ecard admin jobs run NAME`` runs
one now. A run is one transaction: its work and its :class:`~server.records.supervision.JobRun`
row commit together; a run that fails rolls its work back (a savepoint) and still records the
failure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, text
from sqlmodel import Session, col, func, select

from server.attendance.unmatched import PURGE_JOB, purge_unmatched_taps
from server.clock import Clock
from server.config import ServerSettings
from server.errors import JobBusy, JobNotFound
from server.jobs import job_lock_key, round_number, run_every_round
from server.notify.service import deliver_due, prune_deliveries, queue_meeting_notices
from server.records.supervision import JobRun
from server.supervision.sweep import run_sweep
from server.transfers.calendar import transfer_policy
from server.transfers.service import expire_lapsed_requests

log = logging.getLogger(__name__)

JobWork = Callable[[Session, datetime, ServerSettings], str]
MAX_SUMMARY = 500


@dataclass(frozen=True)
class ScheduledJob:
    name: str
    title: str  # for people, in Chinese
    every: Callable[[ServerSettings], timedelta]
    work: JobWork


def _sweep(session: Session, now: datetime, settings: ServerSettings) -> str:
    return run_sweep(session, now=now, settings=settings).summary()


def _expire_transfers(session: Session, now: datetime, settings: ServerSettings) -> str:
    expired = expire_lapsed_requests(session, policy=transfer_policy(settings), now=now)
    return f"过期转入申请{len(expired)}件"


def _purge_unmatched(session: Session, now: datetime, settings: ServerSettings) -> str:
    purged = purge_unmatched_taps(session, now=now, retention=settings.unmatched_retention)
    return f"清除未匹配刷卡的卡号摘要{purged}条"


def _deliver(session: Session, now: datetime, settings: ServerSettings) -> str:
    run = deliver_due(session, now=now, channels=settings)
    return f"发出{run.sent}条，稍后重试{run.retried}条，放弃{run.failed}条，未配置邮件服务器暂存{run.held}条"


def _meeting_notices(session: Session, now: datetime, settings: ServerSettings) -> str:
    queued = queue_meeting_notices(session, now=now, tz=settings.tz, lead=MEETING_NOTICE_LEAD)
    return f"会议通知{queued.queued}条"


def _prune_deliveries(session: Session, now: datetime, _settings: ServerSettings) -> str:
    pruned = prune_deliveries(session, before=now - KEEP_DELIVERIES)
    return f"删除{KEEP_DELIVERIES.days}天前已办结的发送记录{pruned}条"


DAILY = timedelta(days=1)
MEETING_NOTICE_LEAD = timedelta(hours=24)
KEEP_DELIVERIES = timedelta(days=180)
KEEP_RUNS = timedelta(days=30)

JOBS: tuple[ScheduledJob, ...] = (
    ScheduledJob("supervision_sweep", "督查督办：检查四类规则，更新提醒，逾期上报", lambda _s: DAILY, _sweep),
    ScheduledJob("transfer_expiry", "组织关系转入：介绍信过期处理", lambda _s: DAILY, _expire_transfers),
    ScheduledJob(PURGE_JOB, "清除过期的未匹配刷卡记录", lambda s: s.purge_interval, _purge_unmatched),
    ScheduledJob(
        "meeting_notices", "会议通知：24小时内召开的会议", lambda _s: timedelta(minutes=15), _meeting_notices
    ),
    ScheduledJob(
        "notify_delivery", "发送邮件和群机器人消息（失败重试）", lambda _s: timedelta(minutes=1), _deliver
    ),
)


def find_job(name: str) -> ScheduledJob:
    """Raises JobNotFound."""
    for job in JOBS:
        if job.name == name:
            return job
    raise JobNotFound(f"没有名为 {name[:64]} 的定时任务")


def run_job(
    session: Session, job: ScheduledJob, *, settings: ServerSettings, clock: Clock, trigger: str
) -> JobRun:
    """Run ``job`` in ``session``'s transaction and record the run (the caller commits).

    Raises:
        JobBusy: another process is running it (PostgreSQL).
    """
    if session.get_bind().dialect.name == "postgresql":
        taken = session.connection().execute(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": job_lock_key(job.name)}
        )
        if not taken.scalar_one():
            raise JobBusy()
    started = clock()
    run = JobRun(name=job.name, started_at=started, trigger=trigger)
    try:
        with session.begin_nested():
            run.summary = job.work(session, started, settings)[:MAX_SUMMARY]
    except Exception as exc:
        log.exception("job %s failed", job.name)
        run.ok, run.summary = False, f"失败：{exc.__class__.__name__}"
    run.finished_at = clock()
    session.add(run)
    # A minutely job leaves 1,440 rows a day: keep a month of each job's runs.
    session.execute(
        delete(JobRun).where(col(JobRun.name) == job.name, col(JobRun.started_at) < started - KEEP_RUNS)
    )
    session.flush()
    return run


def latest_runs(session: Session) -> dict[str, JobRun]:
    """The latest run of each job that has run."""
    newest = select(JobRun.name, func.max(JobRun.id).label("id")).group_by(col(JobRun.name)).subquery()
    rows = session.exec(select(JobRun).join(newest, col(JobRun.id) == newest.c.id))
    return {row.name: row for row in rows}


def _done_this_round(session: Session, job: ScheduledJob, *, now: datetime, settings: ServerSettings) -> bool:
    """Whether ``job`` already ran successfully in the round ``now`` falls in (by any trigger)."""
    interval = job.every(settings)
    since = datetime.fromtimestamp(round_number(now, interval) * interval.total_seconds(), tz=UTC)
    return (
        session.exec(
            select(JobRun.id)
            .where(JobRun.name == job.name, JobRun.ok, col(JobRun.started_at) >= since)
            .limit(1)
        ).first()
        is not None
    )


async def run_schedule(engine: Engine, settings: ServerSettings, *, clock: Clock) -> None:
    """Every job on its schedule, forever (cancel to stop)."""

    def scheduled(job: ScheduledJob) -> Callable[[Session], bool]:
        def run_round(session: Session) -> bool:
            if _done_this_round(session, job, now=clock(), settings=settings):
                return False  # a restart, or a process that came late: the round is done
            run_job(session, job, settings=settings, clock=clock, trigger="schedule")
            return True

        return run_round

    await asyncio.gather(
        *(
            run_every_round(engine, job.name, scheduled(job), interval=job.every(settings), clock=clock)
            for job in JOBS
        )
    )
