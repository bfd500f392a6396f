"""The admin verbs for ledgers, as a secretary's script uses them (``--json``, exit codes, files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

from server.cli import admin_app


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    for name in ("ECARD_DATABASE_URL", "ECARD_SECRET_KEY", "ECARD_TIMEZONE", "ECARD_LECTURE_CADENCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ECARD_DATA_DIR", str(tmp_path / "data"))
    return CliRunner()


class Admin:
    def __init__(self, runner: CliRunner, database_url: str) -> None:
        self.runner, self.database_url = runner, database_url

    def __call__(self, *args: str) -> Any:
        result = self.runner.invoke(admin_app, [*args, "--json", "--db", self.database_url])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def refused(self, *args: str) -> dict[str, Any]:
        result = self.runner.invoke(admin_app, [*args, "--json", "--db", self.database_url])
        assert result.exit_code == 1, result.output
        parsed: dict[str, Any] = json.loads(result.stdout)
        return parsed


def test_a_secretarys_quarter_from_the_command_line(
    runner: CliRunner, database_url: str, tmp_path: Path
) -> None:
    admin = Admin(runner, database_url)
    committee = admin("org", "add", "某街道党委", "--kind", "basic_committee")["id"]
    branch = admin("org", "add", "第一党支部", "--parent", str(committee))["id"]
    other = admin("org", "add", "第二党支部", "--parent", str(committee))["id"]
    zhang = admin("member", "add", "张三明", "--org", str(branch), "--joined", "2099-01-01T00:00")["id"]
    li = admin("member", "add", "李四", "--org", str(branch), "--category", "probationary")["id"]
    wang = admin("member", "add", "王五", "--org", str(branch))["id"]
    zhao = admin("member", "add", "赵六", "--org", str(other))["id"]
    venue = admin("venue", "add", "党员活动室", "--org", str(committee))["id"]
    binding = admin("card", "bind", str(zhang), "--card-no", "3104393000000018901")["id"]

    # Events far in the future: leave may only be asked before the start, and the CLI reads the
    # real clock.
    event = admin(
        "event", "add", "七月主题党日", "--org", str(branch), "--venue", str(venue),
        "--start", "2099-07-03T09:00", "--end", "2099-07-03T11:00",
        "--kinds", "theme_day,branch_general", "--orgs", str(other),
        "--chair", str(zhang), "--recorder", str(wang), "--topic", "学习党章",
        "--late-after", "2099-07-03T09:10",
    )  # fmt: skip
    assert (event["kinds"], event["org_ids"], event["late_after"]) == (
        ["theme_day", "branch_general"],
        [branch, other],
        "2099-07-03T09:10:00+08:00",
    )
    assert admin.refused("event", "add", "x", "--org", str(branch), "--venue", str(venue),
                         "--start", "2099-07-03T09:00", "--end", "2099-07-03T11:00",
                         "--late-after", "2099-07-03T12:00")["error"] == "invalid_time_range"  # fmt: skip

    leave = admin("leave", "request", str(event["id"]), "--member", str(li), "--reason", "出差")
    assert admin("leave", "approve", str(leave["id"]))["status"] == "approved"
    assert admin.refused("leave", "approve", str(leave["id"]))["error"] == "leave_not_pending"
    assert [r["status"] for r in admin("leave", "list", str(event["id"]))["leave"]] == ["approved"]
    admin("attendance", "add", str(event["id"]), "--member", str(zhang), "--reason", "忘带卡")
    admin("attendance", "add", str(event["id"]), "--member", str(zhao), "--reason", "联合活动，忘带卡")

    sheet = admin("event", "attendance", str(event["id"]))
    assert [p["name"] for p in sheet["present"]] == ["张三明", "赵六"]
    assert [p["name"] for p in sheet["on_leave"]] == ["李四"]
    assert [a["name"] for a in sheet["absent"]] == ["王五"]
    # 应到 = 实到 2 (张三明, 赵六) + 请假 1 (李四) + 缺席 1 (王五): leave stays in 应到 (#10).
    assert sheet["counts"]["expected"] == 4

    xlsx = tmp_path / "q3.xlsx"
    written = admin(
        "ledger", "org", str(branch), "--period", "2099-Q3", "--format", "xlsx", "--out", str(xlsx)
    )
    assert written["format"] == "xlsx"
    assert load_workbook(xlsx)["活动一览"]["C2"].value.startswith("七月主题党日")
    pdf = tmp_path / "sheet.pdf"
    assert admin("ledger", "event", str(event["id"]), "--out", str(pdf))["format"] == "pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
    ledger = admin("ledger", "org", str(branch), "--period", "2099-07", "--at", "2099-07-31T12:00")
    assert [row["title"] for row in ledger["events"]] == ["七月主题党日"]

    history = admin("member", "history", str(zhang))
    assert [row["outcome"] for row in history["events"]] == ["present"]

    # Member and card lifecycle.
    admin("member", "category", str(li), "--category", "full", "--at", "2099-08-01T00:00", "--reason", "转正")
    admin("member", "move", str(wang), "--org", str(other), "--at", "2099-08-15T00:00")
    exemption = admin("member", "exempt", str(zhao), "--reason", "illness", "--from", "2099-08-01T00:00")
    admin("member", "exempt-end", str(exemption["id"]), "--at", "2099-09-01T00:00")
    seat = admin(
        "org", "committee", str(branch), "--member", str(zhang), "--role", "secretary", "--at", "2099-01-01"
    )
    admin("org", "committee-end", str(seat["id"]), "--at", "2099-12-31")
    assert admin("card", "lost", str(binding))["status"] == "lost"
    assert [c["status"] for c in admin("card", "list", str(zhang))["cards"]] == ["lost"]

    report = admin("reminders", "--org", str(committee), "--at", "2099-12-20T12:00")
    assert {r["name"] for r in report["inactivity"]} >= {"王五"}
    assert admin("taps", "purge")["purged"] == 0
    assert admin("taps", "unmatched", "--org", str(committee))["taps"] == []
    assert admin.refused("ledger", "org", str(branch), "--period", "2099Q9")["error"] == "invalid_period"
