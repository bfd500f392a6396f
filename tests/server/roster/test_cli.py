"""``ecard admin import roster.xlsx`` as an operator runs it: exit codes, --json, the row-by-row
report on stderr, and a progress bar for a large file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from server.cli import admin_app
from tests.server.conftest import TEST_SECRET
from tests.server.roster.conftest import Tree, table_counts
from tests.server.roster.workbooks import CHEN_CARD, LIN_CARD, numbered, roster_xlsx

# The command behaves the same on both databases (the API tests cover PostgreSQL).
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

ROWS = numbered(
    [
        ["陈一", "男", "正式党员", "思明区某街道党委/第一党支部", CHEN_CARD],
        ["林二", "女", "预备党员", "第二党支部", LIN_CARD],
    ]
)


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    """An operator's environment holding the same secret as the test keyring (so card digests agree)."""
    for name in ("ECARD_DATABASE_URL", "ECARD_TIMEZONE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ECARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ECARD_SECRET_KEY", TEST_SECRET)
    return CliRunner()


def write(tmp_path: Path, data: bytes, name: str = "花名册.xlsx") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_json_report_then_a_no_op_rerun(
    runner: CliRunner, database_url: str, tmp_path: Path, tree: Tree
) -> None:
    path = write(tmp_path, roster_xlsx(ROWS))

    first = runner.invoke(admin_app, ["import", path, "--json", "--db", database_url])
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert (report["created"], report["cards_bound"], report["dry_run"]) == (2, 2, False)

    second = runner.invoke(admin_app, ["import", path, "--json", "--db", database_url])
    assert second.exit_code == 0
    assert (json.loads(second.stdout)["created"], json.loads(second.stdout)["unchanged"]) == (0, 2)
    assert CHEN_CARD not in first.output + second.output


def test_text_report(runner: CliRunner, database_url: str, tmp_path: Path, tree: Tree) -> None:
    result = runner.invoke(admin_app, ["import", write(tmp_path, roster_xlsx(ROWS)), "--db", database_url])

    assert result.exit_code == 0, result.output
    assert "导入完成：2行 — 新增2人" in result.stdout
    assert "未使用的列（不导入、不保存）：序号" in result.stdout


def test_refusal_lists_every_row_and_imports_nothing(
    runner: CliRunner, database_url: str, engine: Engine, tmp_path: Path, tree: Tree
) -> None:
    rows: list[list[object]] = [
        *ROWS,
        [3, "黄六", "女", "预备党员", "第九党支部", "3104393000001000003"],
        [4, "", "男", "正式", "第二党支部", None],
    ]
    path = write(tmp_path, roster_xlsx(rows))
    before = table_counts(engine)

    text = runner.invoke(admin_app, ["import", path, "--db", database_url])
    assert text.exit_code == 1
    assert text.stdout == ""
    lines = text.stderr.splitlines()
    assert lines[0] == "错误 (roster_invalid): 花名册有2处错误（涉及2行），未导入任何数据"
    assert lines[1].startswith("  [花名册] 第4行 “所在支部”列：党组织“第九党支部”不存在")
    assert lines[1].endswith("[branch_unknown]")
    assert lines[2] == "  [花名册] 第5行 “姓名”列：姓名不能为空 [name_missing]"

    as_json = runner.invoke(admin_app, ["import", path, "--json", "--db", database_url])
    assert as_json.exit_code == 1
    body = json.loads(as_json.stdout)
    assert body["error"] == "roster_invalid"
    assert [(p["row"], p["code"]) for p in body["problems"]] == [(4, "branch_unknown"), (5, "name_missing")]
    assert table_counts(engine) == before


def test_dry_run(runner: CliRunner, database_url: str, engine: Engine, tmp_path: Path, tree: Tree) -> None:
    before = table_counts(engine)
    result = runner.invoke(
        admin_app, ["import", write(tmp_path, roster_xlsx(ROWS)), "--dry-run", "--db", database_url]
    )

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("检查通过（未写入，--dry-run）：2行 — 新增2人")
    assert table_counts(engine) == before


def test_unreadable_file_and_missing_file(
    runner: CliRunner, database_url: str, tmp_path: Path, tree: Tree
) -> None:
    xls = runner.invoke(
        admin_app,
        ["import", write(tmp_path, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504), "old.xls"), "--json"],
    )
    assert xls.exit_code == 1
    assert json.loads(xls.stdout)["error"] == "roster_unreadable"

    missing = runner.invoke(admin_app, ["import", str(tmp_path / "nowhere.xlsx"), "--db", database_url])
    assert missing.exit_code == 2


def test_large_file_shows_progress_on_stderr(
    runner: CliRunner, database_url: str, tmp_path: Path, tree: Tree
) -> None:
    rows = numbered(
        [[f"党员{i:04d}", "男", "正式党员", "第二党支部", f"31043930000020{i:05d}"] for i in range(1200)]
    )
    result = runner.invoke(
        admin_app, ["import", write(tmp_path, roster_xlsx(rows)), "--json", "--db", database_url]
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["created"] == 1200  # stdout stays clean JSON
    for stage in ("读取 花名册", "核对", "写入党员", "绑定卡片"):
        assert f"{stage}:" in result.stderr
    assert "/1200 [" in result.stderr
