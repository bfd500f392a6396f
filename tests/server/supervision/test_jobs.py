"""Scheduled jobs: the server runs them by itself (no cron), every run is recorded, a failing run
rolls its work back and still says it failed, and ``ecard admin jobs list|run`` shows and runs them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select
from typer.testing import CliRunner

from server.app import create_app
from server.cli import admin_app
from server.config import ServerSettings
from server.db import unit_of_work
from server.errors import JobNotFound
from server.records.supervision import JobRun, Reminder
from server.schedule import JOBS, ScheduledJob, find_job, latest_runs, run_job
from tests.server.conftest import FakeClock
from tests.server.factories import World
from tests.server.ledgers.helpers import at


def cli(runner: CliRunner, database_url: str, *args: str) -> dict[str, Any]:
    result = runner.invoke(admin_app, [*args, "--json", "--db", database_url])
    assert result.exit_code == 0, result.output
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, settings: ServerSettings) -> CliRunner:
    for name in ("ECARD_DATABASE_URL", "ECARD_SECRET_KEY", "ECARD_TIMEZONE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ECARD_DATA_DIR", str(settings.data_dir))
    return CliRunner()


def test_the_server_runs_every_job_at_start_up_without_cron(
    settings: ServerSettings, engine: Engine, world: World
) -> None:
    clock = FakeClock(at("2026-12-01"))
    with TestClient(create_app(settings.model_copy(update={"scheduler": True}), clock=clock)):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with unit_of_work(engine) as session:
                runs = latest_runs(session)
            if len(runs) == len(JOBS):
                break
            time.sleep(0.1)
    assert sorted(runs) == sorted(job.name for job in JOBS)
    assert all(run.ok and run.trigger == "schedule" for run in runs.values())
    with unit_of_work(engine) as session:
        assert session.exec(select(Reminder)).first() is not None  # the sweep found the test world


def test_a_failing_run_keeps_nothing_of_its_work_and_is_recorded(
    engine: Engine, world: World, settings: ServerSettings
) -> None:
    def half_then_fail(session: Any, now: Any, _settings: Any) -> str:
        find_job("supervision_sweep").work(session, now, _settings)
        raise RuntimeError("boom")

    broken = ScheduledJob("broken", "坏任务", lambda _s: JOBS[0].every(_s), half_then_fail)
    with unit_of_work(engine) as session:
        run = run_job(session, broken, settings=settings, clock=lambda: at("2026-12-01"), trigger="manual")
    assert (run.ok, run.summary) == (False, "失败：RuntimeError")
    with unit_of_work(engine) as session:
        assert session.exec(select(Reminder)).first() is None
        assert [r.name for r in session.exec(select(JobRun))] == ["broken"]


def test_jobs_list_and_run_from_the_command_line(
    runner: CliRunner, database_url: str, engine: Engine, world: World
) -> None:
    before = cli(runner, database_url, "jobs", "list")
    assert {job["name"]: job["last_run"] for job in before["jobs"]} == {job.name: None for job in JOBS}
    ran = cli(runner, database_url, "jobs", "run", "supervision_sweep")
    assert ran["ok"] is True
    assert "新增" in ran["summary"]
    after = {job["name"]: job for job in cli(runner, database_url, "jobs", "list")["jobs"]}
    assert after["supervision_sweep"]["last_run"]["trigger"] == "manual"
    assert after["supervision_sweep"]["every_seconds"] == 86400
    unknown = runner.invoke(admin_app, ["jobs", "run", "nope", "--json", "--db", database_url])
    assert unknown.exit_code == 1
    assert json.loads(unknown.stdout)["error"] == JobNotFound.code


def test_a_restart_does_not_repeat_a_round_already_done(
    settings: ServerSettings, engine: Engine, world: World
) -> None:
    clock = FakeClock(at("2026-12-01", "09:00"))
    with unit_of_work(engine) as session:
        run_job(session, find_job("supervision_sweep"), settings=settings, clock=clock, trigger="manual")
    with TestClient(create_app(settings.model_copy(update={"scheduler": True}), clock=clock)):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with unit_of_work(engine) as session:
                if len(latest_runs(session)) == len(JOBS):
                    break
            time.sleep(0.1)
    with unit_of_work(engine) as session:
        sweeps = [r.trigger for r in session.exec(select(JobRun).where(JobRun.name == "supervision_sweep"))]
        others = latest_runs(session)
    assert sweeps == ["manual"]  # the day's sweep was done: the start-up round skipped it
    assert all(others[job.name].trigger == "schedule" for job in JOBS if job.name != "supervision_sweep")
