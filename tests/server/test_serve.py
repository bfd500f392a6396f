"""``ecard server run`` as a real process: it migrates, says when it listens, and serves the API
that a kiosk and a secretary use over real HTTP."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from schemas.messages import BatchReceipt, EnrollRequest, EnrollResponse, TapBatch
from tests.server.signing import KioskKeys, card, tap_payload
from tests.server.test_cli import CARD_NO, UID, admin_json

READY = re.compile(r"ecard server ready on (http://\S+)")
# The console script is ecard_cli.main, which also loads the other packages' CLIs; start the
# server's own typer app so this test depends on nothing but the server.
SERVER_COMMAND = [
    sys.executable,
    "-c",
    "from server.cli import server_app; server_app(prog_name='ecard server')",
]


@pytest.fixture
def server_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECARD_")}
    env["ECARD_DATA_DIR"] = str(tmp_path / "data")
    return env


@pytest.fixture
def running_server(server_env: dict[str, str], database_url: str) -> Iterator[str]:
    """Start the server on a free port; yield its base URL once it says it is listening."""
    process = subprocess.Popen(
        [*SERVER_COMMAND, "run", "--host", "127.0.0.1", "--port", "0", "--db", database_url],
        env=server_env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stderr is not None
    stderr = process.stderr

    def pump() -> None:
        for line in stderr:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    try:
        while True:
            try:
                line = lines.get(timeout=30)
            except queue.Empty:
                pytest.fail("server did not report ready within 30 s:\n" + "".join(seen))
            seen.append(line)
            if match := READY.search(line):
                break
        yield match.group(1)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.mark.e2e
def test_kiosk_and_secretary_over_real_http(
    running_server: str, server_env: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Setup by CLI, enrollment and a tap by a kiosk, the sheet by token: one real server."""
    for name, value in server_env.items():
        monkeypatch.setenv(name, value)
    for name in ("ECARD_DATABASE_URL", "ECARD_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()
    now = datetime.now(UTC)
    org = admin_json(runner, database_url, "org", "add", "第一党支部")
    member = admin_json(runner, database_url, "member", "add", "张三明", "--org", str(org["id"]))
    admin_json(runner, database_url, "card", "bind", str(member["id"]), "--card-no", CARD_NO, "--uid", UID)
    venue = admin_json(runner, database_url, "venue", "add", "活动室", "--org", str(org["id"]))
    start, end = (now - timedelta(minutes=10)).isoformat(), (now + timedelta(hours=1)).isoformat()
    org_id, venue_id = str(org["id"]), str(venue["id"])
    event = admin_json(
        runner, database_url, "event", "add", "支部党员大会", "--org", org_id, "--venue", venue_id,
        "--kind", "branch_general", "--start", start, "--end", end,
    )  # fmt: skip
    kiosk = admin_json(runner, database_url, "kiosk", "add", "一号机", "--venue", str(venue["id"]))
    token = admin_json(runner, database_url, "token", "create", "--role", "admin")["token"]
    keys = KioskKeys()

    with httpx.Client(base_url=running_server, timeout=10) as http:
        enrolled = http.post(
            "/api/v1/kiosks/enroll",
            json=EnrollRequest(code=kiosk["enrollment_code"], public_key=keys.public_b64).model_dump(),
        )
        assert enrolled.status_code == 200, enrolled.text
        kiosk_id = EnrollResponse.model_validate(enrolled.json()).kiosk_id
        payload = tap_payload(kiosk_id=kiosk_id, seq=1, at=now, card_facts=card(CARD_NO, UID))
        uploaded = http.post(
            "/api/v1/taps", json=TapBatch(envelopes=[keys.seal(payload)]).model_dump(mode="json")
        )
        assert uploaded.status_code == 200, uploaded.text
        (receipt,) = BatchReceipt.model_validate(uploaded.json()).receipts
        assert (receipt.status.value, receipt.display.member_name, receipt.display.event_title) == (
            "accepted",
            "张*明",
            "支部党员大会",
        )
        sheet = http.get(
            f"/api/v1/events/{event['id']}/attendance", headers={"Authorization": f"Bearer {token}"}
        ).json()
    assert [p["name"] for p in sheet["present"]] == ["张三明"]
    assert {key: value for key, value in sheet["counts"].items() if key in {
        "expected", "present", "absent", "present_full", "present_probationary", "guests"
    }} == {
        "expected": 1,
        "present": 1,
        "absent": 0,
        "present_full": 1,
        "present_probationary": 0,
        "guests": 0,
    }  # fmt: skip
