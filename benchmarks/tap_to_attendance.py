"""Card placed on a PC/SC kiosk → member visible as present in the server's sign-in sheet (issue #2).

Everything is a real process, as in production: ``ecard server run`` (SQLite by default, or
PostgreSQL with ``--pg``), ``ecard agent run --reader pcsc`` reading through pcscd, and the virtual
易通卡 connecting to vpcd. For each of N taps the clock starts when the card touches the reader
(the vpcd connection) and stops when ``GET /api/v1/events/{id}/attendance`` first lists the member,
polled every 5 ms; each tap's kiosk feedback line must say "accepted".

Run: ``.venv/bin/python benchmarks/tap_to_attendance.py [--taps 20] [--pg]`` (needs ``make pcscd``).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg

from ecard_cli.demo import seed
from ecard_cli.stack import enroll_agent, free_port, server_env, start_agent, start_server
from firmware_sim.vpcd import VpcdSlot

PG_ADMIN = os.environ.get("ECARD_TEST_PG_URL", "postgresql://postgres:postgres@127.0.0.1:5432/postgres")


def measure(database_url: str, workdir: Path, taps: int) -> list[float]:
    env = server_env(database_url, workdir / "server", secrets.token_hex(32))
    (workdir / "server").mkdir()
    seeded = seed(env)
    port = free_port()
    server = start_server(env, port, log_path=workdir / "server.log")
    url = f"http://127.0.0.1:{port}"
    to_visible: list[float] = []
    try:
        enroll_agent(url, seeded.enrollment_code, workdir / "kiosk")
        agent = start_agent("pcsc:Virtual PCD 00 01", workdir / "kiosk", log_path=workdir / "agent.log")
        sheet_url = f"{url}/api/v1/events/{seeded.event_id}/attendance"
        headers = {"Authorization": f"Bearer {seeded.token}"}
        try:
            with VpcdSlot(port=35964) as slot, httpx.Client(headers=headers, timeout=10) as client:
                time.sleep(1.0)  # the agent has opened its reader
                for member in seeded.members[:taps]:
                    placed = time.perf_counter()
                    slot.insert(member.card)
                    visible = None
                    while visible is None:
                        present = {p["member_id"] for p in client.get(sheet_url).json()["present"]}
                        if member.member_id in present:
                            visible = time.perf_counter()
                        elif time.perf_counter() - placed > 30:
                            raise RuntimeError(f"member {member.member_id} never became visible")
                        else:
                            time.sleep(0.005)
                    feedback = agent.feedback(timeout=30)
                    assert feedback["status"] == "accepted", feedback
                    to_visible.append(visible - placed)
                    slot.remove()
        finally:
            agent.stop()
    finally:
        server.stop()
    return to_visible


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--taps", type=int, default=20)
    parser.add_argument("--pg", action="store_true", help="PostgreSQL instead of SQLite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.pg:
            name = f"ecard_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            database_url = (
                PG_ADMIN.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0] + f"/{name}"
            )
        else:
            database_url = f"sqlite:///{workdir / 'ecard.sqlite'}"
        try:
            visible = measure(database_url, workdir, args.taps)
        finally:
            if args.pg:
                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    ms = sorted(v * 1000 for v in visible)
    p95 = statistics.quantiles(ms, n=20, method="inclusive")[18]
    database = "PostgreSQL" if args.pg else "SQLite"
    print(f"card placed → present in the sign-in sheet ({database}, {len(ms)} taps)")
    print(
        f"median {statistics.median(ms):.0f} ms   p95 {p95:.0f} ms   min {ms[0]:.0f} ms   max {ms[-1]:.0f} ms"
    )
    print(f"median ÷ pcscd's 400 ms card-presence poll: {statistics.median(ms) / 400:.2f}")


if __name__ == "__main__":
    main()
