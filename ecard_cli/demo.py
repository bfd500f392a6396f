"""``ecard demo``: the whole system on SQLite with simulated cards, as an operator would see it.

1. A fresh data directory (``var/demo``), migrated and seeded with a 联合党委, three 支部 and 30
   members with 易通卡, a venue, an event happening now and a kiosk.
2. ``ecard server run`` and ``ecard agent run --reader pcsc`` as child processes.
3. Twenty simulated cards tapped on the virtual PC/SC reader (vpcd → real pcscd → pyscard),
   each member's result shown as the kiosk shows it.
   Then the same kiosk in 留言 mode: one member taps, and the one-time 留言亭 link the kiosk's
   screen shows as a QR code is printed (the representative reads it at ``/web/booth``).
4. The sign-in sheet, the URLs to look at, and everything kept running until Ctrl-C.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ecard_cli.stack import ECARD, AgentProcess, Child, StackError, enroll_agent, start_agent, start_server
from firmware_sim.cards import TUnionCard
from firmware_sim.vpcd import VpcdSlot

DEMO_DIR = Path("var/demo")
VPCD_PORT = 35963
READER_SPEC = "pcsc:Virtual PCD 00 00"
REPRESENTATIVE_USER = "daibiao"

BRANCHES = ("第一党支部", "第二党支部", "退休党员党支部")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = (
    "建国",
    "秀英",
    "志强",
    "丽华",
    "明",
    "海燕",
    "晓东",
    "静",
    "文斌",
    "春梅",
    "伟",
    "小红",
    "国平",
    "雪",
)


@dataclass(frozen=True)
class DemoMember:
    member_id: int
    name: str
    card: TUnionCard


@dataclass(frozen=True)
class Seeded:
    event_id: int
    event_title: str
    enrollment_code: str
    token: str
    password: str
    members: list[DemoMember]


def _card_for(n: int) -> TUnionCard:
    return TUnionCard(uid=bytes([0x5A, 0x10, n // 256, n % 256]), card_no=f"310439{n:013d}")


def seed(env: dict[str, str]) -> Seeded:
    """Migrate and fill the demo database through the same services the admin CLI uses."""
    from server.auth.service import create_token
    from server.booth.service import add_representative
    from server.caller import CLI_CALLER
    from server.cards.service import bind_card
    from server.config import ServerSettings, load_secret_key
    from server.db import make_engine, unit_of_work
    from server.events.service import add_event
    from server.keyring import Keyring
    from server.kiosks.service import add_kiosk
    from server.migrate import migrate
    from server.orgs.service import add_member, add_organisation
    from server.users.service import add_user
    from server.venues.service import add_venue
    from server.vocabulary import EventKind, MemberCategory, OrgKind, TokenRole, UserRole

    settings = ServerSettings(
        data_dir=Path(env["ECARD_DATA_DIR"]),
        database_url=env["ECARD_DATABASE_URL"],
    )
    keyring = Keyring(load_secret_key(settings))
    engine = make_engine(settings.database_url)
    rng = random.Random(2026)
    now = datetime.now(UTC)
    try:
        migrate(engine)
        with unit_of_work(engine) as session:
            committee = add_organisation(
                session, name="厦门市某街道联合党委", kind=OrgKind.BASIC_COMMITTEE, parent_id=None, now=now
            )
            assert committee.id is not None
            members: list[DemoMember] = []
            names = iter(rng.sample([s + g for s in SURNAMES for g in GIVEN], 10 * len(BRANCHES)))
            for branch_name in BRANCHES:
                branch = add_organisation(
                    session, name=branch_name, kind=OrgKind.BRANCH, parent_id=committee.id, now=now
                )
                assert branch.id is not None
                for _ in range(10):
                    n = len(members) + 1
                    name = next(names)
                    category = MemberCategory.PROBATIONARY if n % 9 == 0 else MemberCategory.FULL
                    member = add_member(
                        session, name=name, org_id=branch.id, category=category, joined_org_at=None, now=now
                    )
                    assert member.id is not None
                    card = _card_for(n)
                    bind_card(
                        session,
                        keyring=keyring,
                        member_id=member.id,
                        card_no=card.card_no,
                        uid=card.uid_hex,
                        now=now,
                    )
                    members.append(DemoMember(member.id, name, card))
            venue = add_venue(session, name="街道党群服务中心 二楼会议室", org_id=committee.id, now=now)
            assert venue.id is not None
            title = f"{now.astimezone(settings.tz):%m}月主题党日：学习党章"
            event = add_event(
                session,
                title=title,
                org_id=committee.id,
                venue_id=venue.id,
                kind=EventKind.THEME_DAY,
                start_at=now - timedelta(minutes=5),
                end_at=now + timedelta(hours=2),
                late_after=now + timedelta(minutes=15),  # the usual grace period: demo taps are on time
                now=now,
                caller=CLI_CALLER,
            )
            assert event.id is not None
            issued = add_kiosk(
                session,
                keyring=keyring,
                name="二楼签到机",
                venue_id=venue.id,
                now=now,
                code_ttl=settings.enrollment_code_ttl,
                caller=CLI_CALLER,
            )
            token = create_token(
                session,
                keyring=keyring,
                role=TokenRole.ADMIN,
                org_id=None,
                label="demo",
                caller=CLI_CALLER,
                now=now,
            )
            password = secrets.token_urlsafe(12)
            add_user(
                session,
                username="demo",
                display_name="演示书记",
                password=password,
                role=UserRole.SECRETARY,
                org_id=committee.id,
                now=now,
                caller=CLI_CALLER,
            )
            # 留言亭: a 党代表 of the 联合党委, who reads the members' messages in the web app.
            add_user(
                session,
                username=REPRESENTATIVE_USER,
                display_name="林代表",
                password=password,
                role=UserRole.REPRESENTATIVE,
                org_id=committee.id,
                now=now,
                caller=CLI_CALLER,
            )
            add_representative(
                session,
                org_id=committee.id,
                name="林代表",
                constituency="软件园选区",
                username=REPRESENTATIVE_USER,
                now=now,
                caller=CLI_CALLER,
            )
            return Seeded(event.id, title, issued.code, token.token, password, members)
    finally:
        engine.dispose()


def _print(line: str = "") -> None:
    print(line, flush=True)


def _show_feedback(agent: AgentProcess) -> None:
    """Print the kiosk's answer to the last tap the way the member sees it."""
    fb = agent.feedback(timeout=30)
    mark = {"accepted": "✔", "duplicate": "↺", "rejected": "✘"}.get(str(fb.get("status")), "…")
    who = fb.get("member_name") or "—"
    _print(f"  {mark} #{fb['seq']:<3} {who!s:<6} {fb.get('message', '')}")


def run_demo(*, port: int, taps: int, keep_running: bool) -> int:
    if DEMO_DIR.exists():
        shutil.rmtree(DEMO_DIR)
    DEMO_DIR.mkdir(parents=True)
    env = dict(os.environ)
    env.update(
        ECARD_DATA_DIR=str(DEMO_DIR / "server"),
        ECARD_DATABASE_URL=f"sqlite:///{(DEMO_DIR / 'server' / 'ecard.sqlite').resolve()}",
        PYTHONUNBUFFERED="1",
    )
    # The secret (and the evidence key) live in the demo's data directory, where the admin CLI
    # finds them afterwards: `ecard admin audit verify` can re-check the demo's taps.
    env.pop("ECARD_SECRET_KEY", None)
    env.pop("ECARD_EVIDENCE_KEY", None)
    (DEMO_DIR / "server").mkdir()
    _print("① 初始化数据库并写入演示数据 (SQLite: var/demo/server/ecard.sqlite)")
    seeded = seed(env)
    _print(f"   1 个联合党委, {len(BRANCHES)} 个支部, {len(seeded.members)} 名党员 (均已绑定易通卡)")
    _print(f"   活动: {seeded.event_title}")

    url = f"http://127.0.0.1:{port}"
    children: list[Child] = []
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        _print(f"② 启动服务器 {url}")
        children.append(start_server(env, port, log_path=DEMO_DIR / "server.log"))
        _print("③ 签到机注册并启动读卡程序 (PC/SC: 虚拟易通卡 → vpcd → pcscd → pyscard)")
        enroll_agent(url, seeded.enrollment_code, DEMO_DIR / "kiosk")
        agent = start_agent(READER_SPEC, DEMO_DIR / "kiosk", log_path=DEMO_DIR / "agent.log")
        children.append(agent.child)

        tapping = seeded.members[: max(taps - 1, 0)]
        stranger = TUnionCard(uid=bytes.fromhex("5A10FFFF"), card_no="3104399999999999999")
        _print(f"④ {len(tapping)} 名党员刷卡, 另有 1 张未登记的卡:")
        with VpcdSlot(port=VPCD_PORT) as slot:
            for card in [*(m.card for m in tapping), stranger]:
                slot.tap(card, hold=0.6, wait_read=5)
                _show_feedback(agent)
            # The same kiosk as a 留言亭: restarted in message mode, one member taps again.
            _print("⑤ 留言亭: 签到机改为留言模式, 一名党员刷卡, 屏幕显示一次性二维码:")
            agent.stop()
            children.remove(agent.child)
            agent = start_agent(
                READER_SPEC, DEMO_DIR / "kiosk", log_path=DEMO_DIR / "agent-booth.log", mode="message"
            )
            children.append(agent.child)
            slot.tap(seeded.members[0].card, hold=0.6, wait_read=10)
            booth = agent.feedback(timeout=30)
            _print(f"  {booth.get('member_name')} {booth.get('message', '')}")
            _print(f"  留言链接 (手机打开; 几分钟内有效, 只能打开一次): {booth.get('link')}")

        _print("⑥ 签到表 (由服务器生成):")
        sheet = subprocess.run(
            [*ECARD, "admin", "event", "attendance", str(seeded.event_id)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        _print(sheet.stdout)
        attendance_url = f"{url}/api/v1/events/{seeded.event_id}/attendance"
        another = seeded.members[-1].card
        _print("看这里:")
        _print(f"  书记工作台        {url}/   (用户 demo, 密码 {seeded.password})")
        _print(f"  签到看板          {url}/web/events/{seeded.event_id}/board")
        _print(f"  留言亭收件箱      {url}/web/booth   (党代表: 用户 {REPRESENTATIVE_USER}, 密码同上)")
        _print(f"  API 文档          {url}/docs")
        _print(f"  签到表 (JSON)     curl -H 'Authorization: Bearer {seeded.token}' {attendance_url}")
        _print(f"  签到机状态        ecard agent status --state-dir {DEMO_DIR / 'kiosk'}")
        _print(
            f"  存证核验          ECARD_DATA_DIR={DEMO_DIR / 'server'} ecard admin audit verify"
            f" --db sqlite:///{DEMO_DIR / 'server' / 'ecard.sqlite'}"
        )
        _print(f"  再刷一张卡        ecard sim card tap --card-no {another.card_no} --uid {another.uid_hex}")
        _print(f"  日志              {DEMO_DIR}/server.log, {DEMO_DIR}/agent.log")
        if keep_running:
            _print("服务器和签到机仍在运行; 按 Ctrl-C 结束。")
            try:
                while not stop.wait(1.0):
                    if not all(child.alive() for child in children):
                        _print("a child process exited; stopping")
                        return 1
            except KeyboardInterrupt:
                pass
        return 0
    except StackError as exc:
        _print(f"demo failed: {exc}")
        return 1
    finally:
        for child in reversed(children):
            child.stop()
        _print("已停止服务器和签到机。")
