"""``make bench``: ingest throughput, latency, reads and kiosk memory in one run (issue #11). Not a test.

Every figure that is a ratio is measured in the same run as its baseline, on the same machine:

* ``verify_per_s_one_core``: Ed25519 verifications a second with ``cryptography`` over a signed
  tap payload like the agent's (about 440 bytes), one thread;
* ``ingest_per_s`` and ``ingest_ratio`` (÷ ``verify_per_s_one_core``, measured again for 1.5 s
  right before each run, because the machine may be shared) on SQLite and PostgreSQL at
  batch 1 and batch 50 with one server process, and on PostgreSQL with two (``--workers 2`` when
  ``ecard server run`` has it, else two processes on two ports, the kiosks split between them),
  with ``http_5xx`` and the server's CPU time per tap (``/proc/<pid>/stat`` utime + stime of the
  server's process group) for each run; each run's kiosks (``--kiosks``, default
  :data:`INGEST_KIOSKS`) send their batches back to back, each waiting for its answer;
* ``single_tap_p50_ms`` / ``single_tap_p99_ms``: 50 kiosks at once, each sending one-tap batches
  back to back, round trip per batch, with one server process and with two (``pg2``): the shape
  of the 1 July peak, many kiosks each sending its taps as they are read;
* ``flash_mob_1000``: 1,000 members tap at 10 kiosks of one venue, each tap its own batch, sent
  back to back; drain time, and tap → visible in ``GET /api/v1/events/{id}/attendance`` (polled)
  p50/p99;
* ``sheet_1000_ms``, ``ledger_org_year_p95_ms_pg``, ``reminders_subtree_p95_ms_pg`` from
  ``benchmarks/reads.py`` when it is there (``--scale``: the synthetic data set's size);
* ``agent_rss_mb``: resident memory of an ``ecard agent run`` process reading a simulated serial
  UID reader on a pty (no pcscd), after it has read and uploaded some taps.

The servers are real ``ecard server run`` processes (log level warning), started fresh on a fresh
database for each configuration; the database is seeded by ``benchmarks/seed_fleet.py`` (a 花名册
import with bound 易通卡, a 主题党日 in progress at every kiosk's venue). The kiosks are simulated
by ``benchmarks/loadgen.py``, which enrols them through the real enrollment endpoint and signs
every tap before the clock starts. Every tap must be accepted: a run with any other receipt is
marked INVALID in the table and in ``bench-results.json``. Rate limits are switched off
(``ECARD_RATE_LIMITS`` all 0): this measures capacity, not the limits. No kiosk starts an upload
after ``--budget`` seconds (default 90) of a run, so a collapsing server cannot hold the bench up;
such a run says CUT SHORT. Server logs are kept in ``var/bench/logs/<start time>/``, and the
exceptions that ended tracebacks in them are counted in the results (``server_errors``).

``--server-src PATH`` runs the servers, the seeding, the agent and the reads from another source
tree (e.g. a clone at an older commit), with this load generator: the "before" column.

Run: ``.venv/bin/python benchmarks/bench.py [--scale town] [--server-src /tmp/bench-before]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# Siblings are imported as top-level modules (``python benchmarks/bench.py`` puts this directory
# first on sys.path); ``server`` and friends come from PYTHONPATH or the editable install.
from loadgen import (
    Batch,
    Card,
    Kiosk,
    Tally,
    Visibility,
    enroll_all,
    percentile,
    poll_attendance,
    run_fleet,
)

from ecard_cli.stack import AgentProcess, Child, StackError, free_port

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO / "benchmarks"

PG_ADMIN = os.environ.get("ECARD_TEST_PG_URL", "postgresql://postgres:postgres@127.0.0.1:5432/postgres")
RESULTS = REPO / "bench-results.json"
NO_RATE_LIMITS = dict.fromkeys(
    (
        "enroll_per_source",
        "taps_per_source",
        "taps_per_kiosk",
        "heartbeats_per_source",
        "heartbeats_per_kiosk",
        "transfers_per_source",
        "transfers_per_caller",
        "lookups_per_source",
        "lookups_per_caller",
    ),
    0,
)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
INGEST_KIOSKS = 20
"""Kiosks in each ingest run, as in issue #11's baseline (pre-signed batches from 20 kiosks). Each
kiosk waits for its answer before it sends again, so a one-tap run measures kiosks ÷ the time of
one upload: the count is part of the condition, and a figure is comparable only at the same one."""
SINGLE_TAP_KIOSKS = 50
FLASH_MOB_KIOSKS = 10
# What the database holds before the run (benchmarks/seed_fleet.py, item 5): a month of meetings.
HISTORY = {"events": 60, "attended": 250, "kiosks": 100, "taps_per_kiosk": 300}
FLASH_MOB_TAPS = 1000
POLL_GAP_S = 0.05


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# -- the baseline ---------------------------------------------------------------------------------


def measure_verify_per_s(seconds: float = 3.0) -> tuple[float, int]:
    """Ed25519 verifications a second, one thread, over a realistic signed tap payload."""
    key = Ed25519PrivateKey.generate()
    kiosk = Kiosk("kiosk-0123456789ab", "ed25519:0123456789abcdef", key, 0, next_seq=1)
    envelope = kiosk.sign_tap(Card(1, "3104390000000000001", "5A000001"), at=datetime.now(UTC))
    data = envelope.payload_bytes()
    signature = envelope.signature_bytes()
    public = key.public_key()
    for _ in range(200):
        public.verify(signature, data)
    count = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(500):
            public.verify(signature, data)
        count += 500
    return count / elapsed, len(data)


# -- processes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """The source tree the server, the seeding, the agent and the reads run from."""

    path: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(self.path), *filter(None, [env.get("PYTHONPATH")])])
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra)
        return env

    def ecard(self) -> list[str]:
        return [sys.executable, "-m", "ecard_cli"]

    def has_workers_option(self) -> bool:
        proc = subprocess.run(
            [*self.ecard(), "server", "run", "--help"],
            env=self.env(COLUMNS="200"),
            cwd=self.path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return "--workers" in proc.stdout

    def commit(self) -> str:
        proc = subprocess.run(
            ["git", "-C", str(self.path), "describe", "--always", "--dirty"], capture_output=True, text=True
        )
        return proc.stdout.strip() or "?"


@dataclass
class Database:
    backend: str  # "sqlite" or "pg"
    url: str
    data_dir: Path
    secret: str = field(default_factory=lambda: secrets.token_hex(32))

    def server_env(self, source: Source) -> dict[str, str]:
        return source.env(
            ECARD_DATABASE_URL=self.url,
            ECARD_DATA_DIR=str(self.data_dir),
            ECARD_SECRET_KEY=self.secret,
            ECARD_RATE_LIMITS=json.dumps(NO_RATE_LIMITS),
        )


@contextmanager
def fresh_database(backend: str, workdir: Path, label: str) -> Iterator[Database]:
    data_dir = workdir / f"{label}-data"
    data_dir.mkdir(parents=True)
    if backend == "sqlite":
        yield Database(backend, f"sqlite:///{data_dir / 'ecard.sqlite'}", data_dir)
        return
    name = f"ecard_bench_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0]
    try:
        yield Database(backend, f"{base}/{name}", data_dir)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(database: Database, source: Source, plan: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "seed_fleet.py"), json.dumps(plan)],
        env=database.server_env(source),
        cwd=source.path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise StackError(f"seeding failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    seeded: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = str(source.path / "server")
    if Path(seeded["server_module"]).resolve() != Path(expected).resolve():
        raise StackError(f"seeding imported {seeded['server_module']}, not {expected}: check PYTHONPATH")
    return seeded


@dataclass
class Servers:
    children: list[Child]
    urls: list[str]
    processes: int  # server processes serving, workers included

    def pgroups(self) -> list[int]:
        return [c.process.pid for c in self.children if c.process is not None]

    def cpu_seconds(self) -> float:
        """utime + stime of every process in the servers' process groups (workers included)."""
        groups = set(self.pgroups())
        ticks = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            # fields[0] is field 3 (state): pgrp is field 5, utime 14, stime 15
            if int(fields[2]) in groups:
                ticks += int(fields[11]) + int(fields[12])
        return ticks / CLOCK_TICKS

    def stop(self) -> None:
        for child in self.children:
            child.stop()


def start_servers(
    database: Database, source: Source, *, processes: int, workers: int, logdir: Path
) -> Servers:
    """``processes`` × ``ecard server run`` (each with ``--workers`` when workers > 1), one after
    the other (the first migrates), each answering before the next starts."""
    children: list[Child] = []
    urls: list[str] = []
    try:
        for n in range(processes):
            port = free_port()
            argv = [
                *source.ecard(),
                "server",
                "run",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ]
            if workers > 1:
                argv += ["--workers", str(workers)]
            child = Child(f"server{n}", argv, database.server_env(source), logdir / f"server{n}.log")
            child.process = subprocess.Popen(
                argv,
                env=child.env,
                cwd=source.path,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            _pump_output(child)
            children.append(child)
            url = f"http://127.0.0.1:{port}"
            _wait_ready(child, url)
            urls.append(url)
    except BaseException:
        for child in children:
            child.stop()
        raise
    return Servers(children, urls, processes * workers)


def _pump_output(child: Child) -> None:
    import threading

    from ecard_cli.stack import _pump

    assert child.process is not None
    assert child.process.stdout is not None
    threading.Thread(
        target=_pump, args=(child.process.stdout, child.lines, child.output), daemon=True
    ).start()


def _wait_ready(child: Child, url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise StackError(f"server exited early:\n{child.transcript()}")
        try:
            if httpx.get(f"{url}/openapi.json", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise StackError(f"server not ready within {timeout} s:\n{child.transcript()}")


# -- the runs ---------------------------------------------------------------------------------------


@dataclass
class Fleet:
    """The seeded members and, per scenario, its kiosk codes (kiosks enrol when the run starts)."""

    token: str
    cards: list[Card]
    scenarios: dict[str, list[dict[str, Any]]]


def fleet_from(seeded: dict[str, Any]) -> Fleet:
    cards = [Card(m["member_id"], m["card_no"], m["uid"]) for m in seeded["members"]]
    return Fleet(seeded["token"], cards, seeded["scenarios"])


def deal(cards: Sequence[Card], kiosks: int, taps: int) -> list[list[Card]]:
    """*taps* distinct members dealt round-robin to *kiosks* kiosks."""
    if taps > len(cards):
        raise ValueError(f"{taps} taps need {taps} members; the roster has {len(cards)}")
    hands: list[list[Card]] = [[] for _ in range(kiosks)]
    for i, card in enumerate(cards[:taps]):
        hands[i % kiosks].append(card)
    return hands


def ingest_run(
    name: str,
    servers: Servers,
    fleet: Fleet,
    *,
    scenario: str,
    batch: int,
    taps: int,
    verify_per_s: float,
    budget_s: float,
) -> dict[str, Any]:
    """Every kiosk of *scenario* uploads its share of *taps* in batches of *batch*, back to back."""
    kiosks = asyncio.run(enroll_all(servers.urls[0], fleet.scenarios[scenario]))
    per_kiosk: list[list[Batch]] = [
        kiosk.batches(hand, batch)
        for kiosk, hand in zip(kiosks, deal(fleet.cards, len(kiosks), taps), strict=True)
    ]
    # The machine is shared: the baseline is taken again right before the run it is the ratio's
    # denominator for, and the run-wide figure (taken at the start) is reported beside it.
    baseline = measure_verify_per_s(1.5)[0] if verify_per_s > 0 else verify_per_s
    cpu_before, client_before = servers.cpu_seconds(), time.process_time()
    tally, elapsed = asyncio.run(run_fleet(servers.urls, per_kiosk, budget_s=budget_s))
    cpu, client_cpu = servers.cpu_seconds() - cpu_before, time.process_time() - client_before
    per_s = tally.taps / elapsed
    result = {
        "run": name,
        "batch": batch,
        "kiosks": len(kiosks),
        "server_processes": servers.processes,
        "taps": tally.taps,
        "seconds": round(elapsed, 3),
        "ingest_per_s": round(per_s, 1),
        "ingest_ratio": round(per_s / baseline, 4),
        "verify_per_s_just_before": round(baseline, 1),
        "server_cpu_ms_per_tap": _per_tap_ms(cpu, tally.taps),
        "server_cpu_s": round(cpu, 2),
        "server_cpu_cores": round(cpu / elapsed, 2),
        "loadgen_cpu_s": round(client_cpu, 2),
        "batch_p50_ms": _ms(percentile(tally.latencies_s, 50)),
        "batch_p99_ms": _ms(percentile(tally.latencies_s, 99)),
        "valid": tally.all_accepted,
        "complete": tally.taps == taps,
        **tally.as_dict(),
    }
    log(f"{name}: {per_s:.0f} taps/s, {tally.http_5xx} 5xx, statuses {dict(tally.statuses)}")
    return result


def single_tap_run(
    name: str, servers: Servers, fleet: Fleet, *, taps_per_kiosk: int, budget_s: float
) -> dict[str, Any]:
    kiosks = asyncio.run(enroll_all(servers.urls[0], fleet.scenarios["single_tap"]))
    hands = deal(fleet.cards, len(kiosks), taps_per_kiosk * len(kiosks))
    per_kiosk = [kiosk.batches(hand, 1) for kiosk, hand in zip(kiosks, hands, strict=True)]
    cpu_before = servers.cpu_seconds()
    tally, elapsed = asyncio.run(run_fleet(servers.urls, per_kiosk, budget_s=budget_s))
    cpu = servers.cpu_seconds() - cpu_before
    result = {
        "run": name,
        "kiosks": len(kiosks),
        "taps": tally.taps,
        "seconds": round(elapsed, 3),
        "taps_per_s": round(tally.taps / elapsed, 1),
        "single_tap_p50_ms": _ms(percentile(tally.latencies_s, 50)),
        "single_tap_p99_ms": _ms(percentile(tally.latencies_s, 99)),
        "server_cpu_ms_per_tap": _per_tap_ms(cpu, tally.taps),
        "valid": tally.all_accepted,
        "complete": tally.taps == taps_per_kiosk * len(kiosks),
        **tally.as_dict(),
    }
    log(f"{name}: p50 {result['single_tap_p50_ms']} ms, p99 {result['single_tap_p99_ms']} ms")
    return result


def flash_mob_run(name: str, servers: Servers, fleet: Fleet, *, budget_s: float) -> dict[str, Any]:
    kiosks = asyncio.run(enroll_all(servers.urls[0], fleet.scenarios["flash_mob"]))
    hands = deal(fleet.cards, len(kiosks), FLASH_MOB_TAPS)
    per_kiosk = [kiosk.batches(hand, 1) for kiosk, hand in zip(kiosks, hands, strict=True)]
    event_ids = sorted({kiosk.event_id for kiosk in kiosks})
    visibility = Visibility()
    tally = Tally()

    async def both() -> float:
        fleet_done = asyncio.Event()
        poller = asyncio.create_task(
            poll_attendance(
                servers.urls[0],
                fleet.token,
                event_ids,
                tally.acked_at,
                fleet_done,
                visibility,
                gap_s=POLL_GAP_S,
                grace_s=60,
            )
        )
        _, drain = await run_fleet(servers.urls, per_kiosk, budget_s=budget_s, tally=tally)
        fleet_done.set()
        await poller
        return drain

    drain = asyncio.run(both())
    to_visible = [visibility.seen_at[m] - tally.sent_at[m] for m in tally.acked_at if m in visibility.seen_at]
    result = {
        "run": name,
        "kiosks": len(kiosks),
        "taps": tally.taps,
        "drain_s": round(drain, 3),
        "tap_to_visible_p50_ms": _ms(percentile(to_visible, 50)),
        "tap_to_visible_p99_ms": _ms(percentile(to_visible, 99)),
        "never_visible": len(tally.acked_at) - len(to_visible),
        "polls": visibility.polls,
        "poll_p50_ms": _ms(percentile(visibility.poll_s, 50)),
        "poll_errors": visibility.poll_errors,
        "round_trip_p50_ms": _ms(percentile(tally.latencies_s, 50)),
        "round_trip_p99_ms": _ms(percentile(tally.latencies_s, 99)),
        "valid": tally.all_accepted and len(to_visible) == len(tally.acked_at),
        "complete": tally.taps == FLASH_MOB_TAPS,
        **tally.as_dict(),
    }
    log(f"{name}: drain {drain:.1f} s, visible p50 {result['tap_to_visible_p50_ms']} ms")
    return result


def _per_tap_ms(cpu_s: float, taps: int) -> float | None:
    return round(cpu_s * 1000 / taps, 3) if taps else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


# -- the kiosk agent's memory -----------------------------------------------------------------------


def agent_rss_run(
    servers: Servers, fleet: Fleet, source: Source, workdir: Path, *, taps: int = 20
) -> dict[str, Any]:
    """RSS of ``ecard agent run`` on a simulated serial reader after it read and uploaded *taps* taps."""
    from firmware_sim.cards import VirtualCard
    from firmware_sim.serial_reader import SerialReaderSim

    code = fleet.scenarios["agent"][0]["code"]
    state = workdir / "agent-state"
    env = source.env()
    enrolled = subprocess.run(
        [
            *source.ecard(),
            "agent",
            "enroll",
            "--server",
            servers.urls[0],
            "--code",
            code,
            "--state-dir",
            str(state),
        ],
        env=env,
        cwd=source.path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if enrolled.returncode != 0:
        raise StackError(f"agent enroll failed: {enrolled.stderr or enrolled.stdout}")
    statuses: dict[str, int] = {}
    with SerialReaderSim("hexline") as sim:
        spec = f"serial:{sim.port}?format=hexline&gap_ms=300"
        argv = [*source.ecard(), "agent", "run", "--reader", spec, "--state-dir", str(state), "--json"]
        child = Child("agent", argv, env, workdir / "agent.log")
        child.process = subprocess.Popen(
            argv,
            env=env,
            cwd=source.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        _pump_output(child)
        agent = AgentProcess(child)
        try:
            time.sleep(2.0)  # the agent has opened its reader
            # The last members of the roster: nobody else taps them at this venue's event.
            for card in fleet.cards[-taps:]:
                sim.present(VirtualCard(uid=bytes.fromhex(card.uid)))
                time.sleep(0.35)
                sim.remove()
                feedback = agent.feedback(timeout=30)
                status = str(feedback.get("status"))
                if status != "accepted":
                    status += f":{feedback.get('code') or feedback.get('message')}"
                statuses[status] = statuses.get(status, 0) + 1
                time.sleep(0.35)  # the reader's 300 ms gap ends the presentation
            time.sleep(2.0)  # uploads settled, heartbeat sent
            assert child.process is not None
            rss_kb = _status_kb(child.process.pid, "VmRSS")
            hwm_kb = _status_kb(child.process.pid, "VmHWM")
        finally:
            agent.stop()
    result = {
        "agent_rss_mb": round(rss_kb / 1024, 1),
        "agent_peak_rss_mb": round(hwm_kb / 1024, 1),
        "taps": taps,
        "statuses": statuses,
        "reader": "serial hexline UID reader on a pty (firmware_sim), no pcscd",
        "valid": statuses.get("accepted", 0) == taps,
    }
    log(f"agent: RSS {result['agent_rss_mb']} MB after {taps} taps, statuses {statuses}")
    return result


def _status_kb(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise StackError(f"/proc/{pid}/status has no {name}")


# -- the reads --------------------------------------------------------------------------------------


READ_FIGURES = (
    "sheet_1000_ms",
    "sheet_1000_ms_pg",
    "ledger_org_year_p95_ms_pg",
    "reminders_subtree_p95_ms_pg",
)


def reads_run(source: Source, workdir: Path, scale: str) -> dict[str, Any]:
    """``benchmarks/reads.py`` in a child process on *source* (so a "before" run reads with its code).

    The synthetic city is cached per scale and per source tree: the tree under test uses
    ``ecard_bench`` for the city (``benchmarks/ledger.py``'s own cache) and ``ecard_bench_<scale>``
    otherwise; another tree gets ``ecard_bench_other_<scale>``, so that neither tree's migrations
    ever run on a database the other one built."""
    nothing: dict[str, Any] = dict.fromkeys(READ_FIGURES)
    if not (BENCHMARKS / "reads.py").exists():
        why = "benchmarks/reads.py is not there (yet)"
        log(f"reads: skipped: {why}")
        return {**nothing, "why": why}
    base = PG_ADMIN.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0]
    if source.path == REPO:
        city = "ecard_bench" if scale == "city" else f"ecard_bench_{scale}"
    else:
        city = f"ecard_bench_other_{scale}"
    request = {
        "sheet_sqlite": f"sqlite:///{workdir / 'reads-sheet.sqlite'}",
        "sheet_pg": f"{base}/ecard_bench_sheet_{uuid.uuid4().hex[:8]}",
        "city_pg": f"{base}/{city}",
        "scale": scale,
    }
    try:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--reads-child", json.dumps(request)],
            env=source.env(),
            cwd=source.path,
            capture_output=True,
            text=True,
            timeout=4 * 3600,
        )
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{request["sheet_pg"].rsplit("/", 1)[1]}" WITH (FORCE)')
    sys.stderr.write(proc.stderr[-3000:])
    if proc.returncode != 0 or not proc.stdout.strip():
        why = f"benchmarks/reads.py failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}"
        log(f"reads: {why}")
        return {**nothing, "why": why}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["city_database"] = city
    log(f"reads: {result}")
    return result


def reads_child(request: dict[str, Any]) -> None:
    """Runs in the child: call what ``benchmarks/reads.py`` offers, null (with why) for what it lacks."""
    import importlib

    out: dict[str, Any] = dict.fromkeys(READ_FIGURES)
    why: list[str] = []
    reads = importlib.import_module("reads")
    sheet: Callable[[str], float] | None = getattr(reads, "measure_sheet_1000_ms", None)
    ledger: Callable[..., dict[str, float]] | None = getattr(reads, "measure_ledger_org_year_p95_ms", None)
    if sheet is None:
        why.append("reads.py has no measure_sheet_1000_ms")
    else:
        out["sheet_1000_ms"] = round(float(sheet(request["sheet_sqlite"])), 1)
        out["sheet_1000_ms_pg"] = round(float(sheet(request["sheet_pg"])), 1)
    if ledger is None:
        why.append("reads.py has no measure_ledger_org_year_p95_ms")
    else:
        for key, value in ledger(request["city_pg"], scale=request["scale"]).items():
            out[key if key.endswith("_pg") else f"{key}_pg"] = round(float(value), 1)
    if why:
        out["why"] = "; ".join(why)
    print(json.dumps(out))


# -- one configuration ------------------------------------------------------------------------------


def run_database(
    backend: str,
    source: Source,
    workdir: Path,
    args: argparse.Namespace,
    verify_per_s: float,
    *,
    processes: int = 1,
    workers: int = 1,
    extras: bool = True,
) -> dict[str, Any]:
    label = f"{backend}{'x2' if processes * workers > 1 else ''}"
    plan_scenarios: list[dict[str, Any]] = [
        {"name": "ingest_b1", "venues": 1, "kiosks_per_venue": args.kiosks},
        {"name": "ingest_b50", "venues": 1, "kiosks_per_venue": args.kiosks},
        {"name": "single_tap", "venues": 5, "kiosks_per_venue": SINGLE_TAP_KIOSKS // 5},
    ]
    if extras:
        plan_scenarios += [
            {"name": "flash_mob", "venues": 1, "kiosks_per_venue": FLASH_MOB_KIOSKS},
            {"name": "agent", "venues": 1, "kiosks_per_venue": 1, "accept_uid_only_reads": True},
        ]
    members = max(args.taps, FLASH_MOB_TAPS + 20, SINGLE_TAP_KIOSKS * args.single_taps)
    plan = {"members": members, "branches": 20, "scenarios": plan_scenarios, "history": HISTORY}
    out: dict[str, Any] = {"database": backend, "server_processes": processes * workers, "runs": []}
    with fresh_database(backend, workdir, label) as database:
        started = time.perf_counter()
        fleet = fleet_from(seed(database, source, plan))
        log(f"{label}: seeded {members} members in {time.perf_counter() - started:.0f} s")
        logdir = args.logs / label
        logdir.mkdir(parents=True)
        servers = start_servers(database, source, processes=processes, workers=workers, logdir=logdir)
        try:
            for batch, scenario in ((1, "ingest_b1"), (50, "ingest_b50")):
                if f"b{batch}" not in args.runs:
                    continue
                name = f"{label}_b{batch}"
                out["runs"].append(
                    ingest_run(
                        name,
                        servers,
                        fleet,
                        scenario=scenario,
                        batch=batch,
                        taps=args.taps,
                        verify_per_s=verify_per_s,
                        budget_s=args.budget,
                    )
                )
            if "single" in args.runs:
                out["single_tap"] = single_tap_run(
                    f"{label}_single_tap",
                    servers,
                    fleet,
                    taps_per_kiosk=args.single_taps,
                    budget_s=args.budget,
                )
            if extras and "flash" in args.runs:
                out["flash_mob_1000"] = flash_mob_run(
                    f"{label}_flash_mob", servers, fleet, budget_s=args.budget
                )
            if extras and backend == "sqlite" and "agent" in args.runs:
                try:
                    out["agent"] = agent_rss_run(servers, fleet, source, workdir)
                except (StackError, OSError, AssertionError) as exc:
                    out["agent"] = {"agent_rss_mb": None, "why": str(exc)[-500:], "valid": False}
                    log(f"agent: failed: {exc}")
        finally:
            servers.stop()
            out["server_errors"] = server_errors([line for c in servers.children for line in c.output])
            if out["server_errors"]:
                log(f"{label}: server errors {out['server_errors']} (logs in {logdir})")
    return out


def server_errors(lines: Sequence[str]) -> dict[str, int]:
    """How often each exception ended a traceback in the servers' output: the last line of each
    chain (an exception raised while handling another counts once, as the one that escaped)."""
    found: dict[str, int] = {}
    pending: str | None = None
    in_traceback = False

    def count(key: str | None) -> None:
        if key is not None:
            found[key] = found.get(key, 0) + 1

    for line in "".join(lines).splitlines():
        if line.startswith(("The above exception", "During handling")):
            pending = None  # the chain goes on: its last exception is the one that counts
        elif line.startswith("Traceback"):
            count(pending)
            pending, in_traceback = None, True
        elif in_traceback and line and not line.startswith((" ", "\t")):
            pending, in_traceback = line[:200], False
        elif line and not in_traceback:
            count(pending)
            pending = None
    count(pending)
    return found


# -- the report -------------------------------------------------------------------------------------


def _verdict(run: dict[str, Any]) -> str:
    if run["valid"]:
        verdict = "all accepted"
    elif not run["statuses"]:
        verdict = "NO ANSWERS: not one upload was answered"
    else:
        verdict = f"INVALID {run['statuses']}"
    if not run.get("complete", True):
        verdict += (
            f", CUT SHORT: {run['unsent_after_budget']} taps unsent and "
            f"{run.get('abandoned_after_budget', 0)} abandoned after --budget"
        )
    return verdict


def table(results: dict[str, Any]) -> str:
    lines = [
        f"bench {results['started_at']} · server source {results['server_src']} "
        f"({results['server_commit']}) · {results['machine']['cpus']} CPUs, "
        f"load {results['machine']['load_before']} · scale {results['scale']}",
        f"verify_per_s_one_core: {results['verify_per_s_one_core']:.0f} /s over a "
        f"{results['payload_bytes']}-byte payload",
        "",
        f"{'ingest run':<16} {'batch':>5} {'kiosks':>6} {'procs':>5} {'taps':>5} {'taps/s':>8} "
        f"{'verify/s':>8} {'ratio':>7} {'5xx':>5} {'cpu ms/tap':>10} {'cores':>5} {'batch p50':>9} "
        f"{'batch p99':>9}  receipts",
    ]
    for run in results["ingest"]:
        verdict = _verdict(run)
        lines.append(
            f"{run['run']:<16} {run['batch']:>5} {run['kiosks']:>6} {run['server_processes']:>5} "
            f"{run['taps']:>5} "
            f"{run['ingest_per_s']:>8.1f} {run.get('verify_per_s_just_before', '')!s:>8} "
            f"{run['ingest_ratio']:>7.4f} {run['http_5xx']:>5} "
            f"{run['server_cpu_ms_per_tap']!s:>10} {run.get('server_cpu_cores', '')!s:>5} "
            f"{run['batch_p50_ms']!s:>9} "
            f"{run['batch_p99_ms']!s:>9}  {verdict}"
        )
    lines.append(f"http_5xx total: {results['http_5xx_total']} (every run's count is in its row)")
    lines.append("")
    for backend, run in results["single_tap"].items():
        verdict = _verdict(run)
        lines.append(
            f"single tap, {run['kiosks']} kiosks, {backend:<6}: p50 {run['single_tap_p50_ms']} ms, "
            f"p99 {run['single_tap_p99_ms']} ms ({run['taps']} taps, {run['taps_per_s']} taps/s, "
            f"{run['http_5xx']} 5xx, {run['server_cpu_ms_per_tap']} cpu ms/tap) {verdict}"
        )
    for backend, run in results["flash_mob_1000"].items():
        verdict = _verdict(run) + (f", never visible {run['never_visible']}" if run["never_visible"] else "")
        lines.append(
            f"flash mob 1000, 10 kiosks, {backend:<6}: drain {run['drain_s']} s, tap → visible "
            f"p50 {run['tap_to_visible_p50_ms']} ms, p99 {run['tap_to_visible_p99_ms']} ms "
            f"({run['polls']} polls, poll p50 {run['poll_p50_ms']} ms, {run['http_5xx']} 5xx) {verdict}"
        )
    reads = results["reads"]
    lines.append("")
    lines.append(
        f"sheet_1000_ms: {reads.get('sheet_1000_ms')} (pg {reads.get('sheet_1000_ms_pg')})   "
        f"ledger_org_year_p95_ms_pg: "
        f"{reads.get('ledger_org_year_p95_ms_pg')}   reminders_subtree_p95_ms_pg: "
        f"{reads.get('reminders_subtree_p95_ms_pg')}" + (f"   ({reads['why']})" if reads.get("why") else "")
    )
    agent = results["agent"]
    lines.append(
        f"agent_rss_mb: {agent.get('agent_rss_mb')} (peak {agent.get('agent_peak_rss_mb')}; "
        f"{agent.get('reader', '')}; statuses {agent.get('statuses')})"
        + (f" ({agent['why']})" if agent.get("why") else "")
    )
    invalid = results["invalid_runs"]
    lines.append("")
    lines.append(f"INVALID runs: {', '.join(invalid)}" if invalid else "every run valid: every tap accepted")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale", default="city", help="Synthetic data set for the reads: city, town or tiny."
    )
    parser.add_argument("--server-src", type=Path, default=REPO, help="Source tree to run the server from.")
    parser.add_argument("--taps", type=int, default=2000, help="Taps per ingest run.")
    parser.add_argument("--kiosks", type=int, default=INGEST_KIOSKS, help="Kiosks per ingest run.")
    parser.add_argument(
        "--budget", type=float, default=90, help="Seconds a load run may send for; the rest is left unsent."
    )
    parser.add_argument("--single-taps", type=int, default=20, help="Taps per kiosk in the single-tap run.")
    parser.add_argument(
        "--backend", nargs="+", choices=("sqlite", "pg", "pg2"), default=["sqlite", "pg", "pg2"]
    )
    parser.add_argument("--skip-reads", action="store_true")
    parser.add_argument(
        "--runs",
        nargs="+",
        choices=("b1", "b50", "single", "flash", "agent"),
        default=["b1", "b50", "single", "flash", "agent"],
        help="Which load runs to make (default: all).",
    )
    parser.add_argument(
        "--logs", type=Path, default=None, help="Where server logs go (default var/bench/logs/<time>)."
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--show", type=Path, help="Only print the table of an earlier results file.")
    parser.add_argument("--reads-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    # Stop cleanly (servers stopped, databases dropped) on Ctrl-C or kill, even when started in
    # the background, where a non-interactive shell makes the process ignore SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    if args.show:
        print(table(json.loads(args.show.read_text())))
        return
    if args.reads_child:
        reads_child(json.loads(args.reads_child))
        return

    source = Source(args.server_src.resolve())
    started_at = datetime.now(UTC)
    args.logs = args.logs or REPO / "var" / "bench" / "logs" / f"{started_at:%Y%m%dT%H%M%S}"
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    log(f"server source {source.path} ({source.commit()}); load {load_before}")
    verify_per_s, payload_bytes = measure_verify_per_s()
    log(f"verify_per_s_one_core: {verify_per_s:.0f} ({payload_bytes}-byte payload)")

    workdir = Path(tempfile.mkdtemp(prefix="ecard-bench-"))
    results: dict[str, Any] = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "server_src": str(source.path),
        "server_commit": source.commit(),
        "scale": args.scale,
        "machine": {"cpus": os.cpu_count(), "load_before": load_before, "python": platform.python_version()},
        "verify_per_s_one_core": round(verify_per_s, 1),
        "payload_bytes": payload_bytes,
        "rate_limits": "off (ECARD_RATE_LIMITS all 0)",
        "ingest": [],
        "single_tap": {},
        "flash_mob_1000": {},
        "agent": {"agent_rss_mb": None, "why": "not run"},
        "reads": {"why": "skipped (--skip-reads)"},
    }
    try:
        for backend in args.backend:
            if backend == "pg2":
                workers = 2 if source.has_workers_option() else 1
                processes = 1 if workers == 2 else 2
                how = "--workers 2" if workers == 2 else "two ecard server run processes, kiosks split"
                log(f"pg with 2 server processes: {how}")
                outcome = run_database(
                    "pg",
                    source,
                    workdir,
                    args,
                    verify_per_s,
                    processes=processes,
                    workers=workers,
                    extras=False,
                )
                results["pg2_how"] = how
            else:
                outcome = run_database(backend, source, workdir, args, verify_per_s)
            results["ingest"] += outcome["runs"]
            for run in ("single_tap", "flash_mob_1000"):
                if run in outcome:
                    results[run][backend] = outcome[run]
            if "agent" in outcome:
                results["agent"] = outcome["agent"]
            results.setdefault("server_errors", {})[
                outcome["database"] + str(outcome["server_processes"])
            ] = outcome["server_errors"]
        if not args.skip_reads:
            results["reads"] = reads_run(source, workdir, args.scale)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    results["http_5xx_total"] = sum(
        run["http_5xx"]
        for run in [*results["ingest"], *results["single_tap"].values(), *results["flash_mob_1000"].values()]
    )
    results["invalid_runs"] = [
        run["run"]
        for run in [*results["ingest"], *results["single_tap"].values(), *results["flash_mob_1000"].values()]
        if not run["valid"]
    ] + (
        ["agent"]
        if results["agent"].get("agent_rss_mb") is not None and not results["agent"]["valid"]
        else []
    )
    results["figures"] = headline(results)
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["load_after"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    args.out.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n")
    print(table(results))
    print(f"\nwritten to {args.out}")


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's figures, flat, keyed by the names the issue uses."""
    figures: dict[str, Any] = {"verify_per_s_one_core": results["verify_per_s_one_core"]}
    for run in results["ingest"]:
        figures[f"ingest_per_s_{run['run']}"] = run["ingest_per_s"]
        figures[f"ingest_ratio_{run['run']}"] = run["ingest_ratio"]
        figures[f"http_5xx_{run['run']}"] = run["http_5xx"]
    figures["http_5xx"] = results["http_5xx_total"]
    for backend, run in results["single_tap"].items():
        figures[f"single_tap_p50_ms_{backend}"] = run["single_tap_p50_ms"]
        figures[f"single_tap_p99_ms_{backend}"] = run["single_tap_p99_ms"]
        figures[f"single_tap_per_s_{backend}"] = run["taps_per_s"]
    for backend, run in results["flash_mob_1000"].items():
        figures[f"flash_mob_1000_{backend}"] = {
            "drain_s": run["drain_s"],
            "tap_to_visible_p50_ms": run["tap_to_visible_p50_ms"],
            "tap_to_visible_p99_ms": run["tap_to_visible_p99_ms"],
        }
    for key in READ_FIGURES:
        figures[key] = results["reads"].get(key)
    figures["agent_rss_mb"] = results["agent"].get("agent_rss_mb")
    return figures


if __name__ == "__main__":
    main()
