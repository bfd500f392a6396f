"""``ecard admin transfer list`` and ``expire-lapsed``: the daily sweep a cron job runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from server.cli import admin_app
from server.config import ServerSettings
from server.db import unit_of_work
from server.keyring import Keyring
from server.records.transfers import TransferSource
from server.transfers.schemas import TransferCreate
from server.transfers.service import create_request
from tests.server.conftest import TEST_SECRET
from tests.server.factories import World
from tests.server.transfers.factories import (
    QIAN_CARD,
    build_elsewhere,
    letter,
    policy,
    release,
    requests,
    reviewer,
)


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.delenv("ECARD_DATABASE_URL", raising=False)
    monkeypatch.setenv("ECARD_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("ECARD_DATA_DIR", str(tmp_path / "data"))
    return CliRunner()


def test_the_sweep_expires_a_letter_that_lapsed_while_pending(
    runner: CliRunner, settings: ServerSettings, engine: Engine, keyring: Keyring, world: World
) -> None:
    two_months_ago = datetime.now(UTC) - timedelta(days=60)
    elsewhere = build_elsewhere(engine, keyring, now=two_months_ago)
    with unit_of_work(engine) as session:
        filed = create_request(
            session,
            keyring=keyring,
            data=TransferCreate(
                to_org_id=world.committee_id,
                card_no=QIAN_CARD.card_no,
                letter=letter(issued_on=two_months_ago.date()),
            ),
            caller=reviewer(session, world.committee_id),
            source=TransferSource.API,
            policy=policy(),
            now=two_months_ago,
        ).id
    assert filed is not None
    release(engine, elsewhere, filed, now=two_months_ago)

    listed = runner.invoke(
        admin_app, ["transfer", "list", "--overdue", "--json", "--db", settings.database_url]
    )
    assert listed.exit_code == 0, listed.output
    body = json.loads(listed.stdout)
    assert (body["total"], body["overdue"]) == (1, 1)
    assert body["transfers"][0]["applicant_name"] == "钱七"

    swept = runner.invoke(admin_app, ["transfer", "expire-lapsed", "--json", "--db", settings.database_url])
    assert swept.exit_code == 0, swept.output
    (request,) = requests(engine)
    assert json.loads(swept.stdout) == {"expired": [request.id]}
    assert request.state == "expired"
    again = runner.invoke(admin_app, ["transfer", "expire-lapsed", "--db", settings.database_url])
    assert again.stdout.strip() == "0 request(s) expired"
