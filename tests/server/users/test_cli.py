"""``ecard admin user add``: the first administrator and the secretaries, password from stdin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from server.cli import admin_app
from server.db import make_engine
from server.records.users import User


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    for name in ("ECARD_DATABASE_URL", "ECARD_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ECARD_DATA_DIR", str(tmp_path / "data"))
    return CliRunner()


def test_the_first_admin_needs_no_organisation(runner: CliRunner, database_url: str) -> None:
    result = runner.invoke(
        admin_app,
        ["user", "add", "root", "--role", "admin", "--json", "--db", database_url],
        input="correct horse battery staple\n",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"id": 1, "username": "root", "role": "admin", "org_id": None}
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            user = session.exec(select(User)).one()
    finally:
        engine.dispose()
    assert user.password_hash.startswith("$argon2id$")
    assert "correct horse" not in result.output


def test_a_secretary_is_scoped_to_an_organisation(runner: CliRunner, database_url: str) -> None:
    org = runner.invoke(admin_app, ["org", "add", "第一党支部", "--json", "--db", database_url])
    org_id = json.loads(org.stdout)["id"]
    result = runner.invoke(
        admin_app,
        ["user", "add", "chen", "--org", str(org_id), "--role", "secretary", "--display-name", "陈书记"],
        input="branch-secretary-pass\n",
        env={"ECARD_DATABASE_URL": database_url},
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"user 1 added: chen (secretary, organisation {org_id})"


@pytest.mark.parametrize(
    ("args", "stdin", "code"),
    [
        (["user", "add", "chen", "--role", "secretary"], "branch-secretary-pass\n", "org_required"),
        (["user", "add", "chen", "--role", "admin"], "short\n", "weak_password"),
        (["user", "add", "chen", "--role", "admin"], "", "invalid_configuration"),
    ],
)
def test_refusals_have_codes(
    runner: CliRunner, database_url: str, args: list[str], stdin: str, code: str
) -> None:
    result = runner.invoke(admin_app, [*args, "--json", "--db", database_url], input=stdin)
    assert result.exit_code in (1, 2)
    assert json.loads(result.stdout)["error"] == code
