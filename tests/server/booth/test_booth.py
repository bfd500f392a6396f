"""留言亭 through the real app: a signed message-mode tap answers a one-time link; the link opens
once, expires, and starts a short member session; anonymity, scope and the daily limits."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine
from sqlmodel import col, select

from schemas.messages import CardFacts, TapBatch, TapMode, TapReceipt
from server.app import create_app
from server.booth.service import (
    MAX_PHOTO_BYTES,
    PhotoUpload,
    add_representative,
    close_message,
    forward_message,
    inbox,
    purge_closed,
    read_message,
    reply_to_message,
    set_representative_photo,
    yearly_summary,
)
from server.caller import CLI_CALLER, Caller, Scope
from server.config import ServerSettings
from server.db import unit_of_work
from server.errors import AttachmentTypeRefused, BoothMessageClosed, BoothMessageNotFound
from server.records.audit import AuditEntry
from server.records.booth import BoothMessage, BoothPhoto
from server.records.dues import DuesMonth, DuesSource
from server.records.leave import LeaveRequest
from server.records.taps import Tap
from server.users.service import add_user, user_actor
from server.vocabulary import BoothMessageStatus, BoothTopic, LeaveStatus, UserRole
from tests.server.conftest import FakeClock
from tests.server.factories import (
    EVENT_END,
    EVENT_START,
    LI_CARD,
    STRANGER_CARD,
    ZHANG_CARD,
    ZHAO_CARD,
    World,
)

LINK = re.compile(r"^http://testserver/web/m/open/[A-Za-z0-9_-]{20,}$")


@dataclass(frozen=True)
class Booth:
    committee_rep: int  # 林代表, at the committee: every member may write to them
    other_rep: int  # 钱代表, at the other branch only
    committee_rep_user: int
    other_rep_user: int


def _rep_caller(user_id: int, name: str) -> Caller:
    return Caller(
        actor=user_actor(user_id, name),
        role=UserRole.REPRESENTATIVE,
        org_id=None,
        scope=Scope(frozenset()),
        may_approve=False,
    )


@pytest.fixture
def booth(engine: Engine, world: World, clock: FakeClock) -> Booth:
    with unit_of_work(engine) as session:
        users = {}
        for username, name, org in (
            ("linrep", "林代表", world.committee_id),
            ("qianrep", "钱代表", world.other_branch_id),
        ):
            user = add_user(
                session,
                username=username,
                display_name=name,
                password="representative-pass-1",
                role=UserRole.REPRESENTATIVE,
                org_id=org,
                now=clock.now,
                caller=CLI_CALLER,
            )
            assert user.id is not None
            users[username] = user.id
        committee_rep = add_representative(
            session,
            org_id=world.committee_id,
            name="林代表",
            constituency="软件园选区",
            username="linrep",
            now=clock.now,
            caller=CLI_CALLER,
        )
        other_rep = add_representative(
            session,
            org_id=world.other_branch_id,
            name="钱代表",
            constituency="",
            username="qianrep",
            now=clock.now,
            caller=CLI_CALLER,
        )
        assert committee_rep.id is not None
        assert other_rep.id is not None
        return Booth(committee_rep.id, other_rep.id, users["linrep"], users["qianrep"])


def _tap(client: TestClient, world: World, clock: FakeClock, card: CardFacts) -> TapReceipt:
    envelope = world.keys.seal(world.payload(card, at=clock.now, mode=TapMode.MESSAGE))
    response = client.post(
        "/api/v1/taps",
        content=TapBatch(envelopes=[envelope]).model_dump_json(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    receipt = TapReceipt.model_validate(response.json()["receipts"][0])
    return receipt


def _open(client: TestClient, link: str) -> None:
    response = client.get(link, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/web/m/"


def _csrf(client: TestClient) -> str:
    page = client.get("/web/m/")
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def _send(client: TestClient, representative_id: int, body: str, *, anonymous: bool = False) -> int:
    data = {"csrf_token": _csrf(client), "representative_id": str(representative_id), "body": body}
    if anonymous:
        data["anonymous"] = "1"
    response = client.post("/web/m/messages", data=data, follow_redirects=False)
    status: int = response.status_code
    return status


def test_a_message_tap_answers_a_link_that_opens_once(
    client: TestClient, world: World, clock: FakeClock, booth: Booth, engine: Engine
) -> None:
    receipt = _tap(client, world, clock, ZHANG_CARD)
    assert receipt.status == "accepted"
    assert receipt.display.message == "请用手机扫码留言"
    assert receipt.display.member_name == "张*明"
    assert receipt.display.link is not None
    assert LINK.match(receipt.display.link)
    with unit_of_work(engine) as session:
        tap = session.exec(select(Tap).where(Tap.seq == receipt.seq)).one()
        assert tap.mode == TapMode.MESSAGE
        assert tap.event_id is None  # never attendance
        assert receipt.display.link.rsplit("/", 1)[1] not in repr(tap.model_dump())

    _open(client, receipt.display.link)
    home = client.get("/web/m/")
    assert "张*明，您好" in home.text
    assert "林代表" in home.text
    assert "软件园选区" in home.text
    assert "钱代表" not in home.text  # another branch's representative
    assert ZHANG_CARD.card_no not in home.text  # only masked digits

    again = TestClient(client.app).get(receipt.display.link)
    assert again.status_code == 410
    assert 'data-code="booth_link_used"' in again.text
    assert "此链接已经使用过" in again.text


def test_an_expired_or_unknown_link_is_refused_in_chinese(
    client: TestClient, world: World, clock: FakeClock, booth: Booth
) -> None:
    receipt = _tap(client, world, clock, ZHANG_CARD)
    assert receipt.display.link is not None
    clock.advance(minutes=5, seconds=1)
    expired = client.get(receipt.display.link)
    assert expired.status_code == 410
    assert 'data-code="booth_link_expired"' in expired.text
    assert "此链接已过期" in expired.text
    unknown = client.get("/web/m/open/not-a-real-token-at-all")
    assert unknown.status_code == 404
    assert 'data-code="booth_link_invalid"' in unknown.text


def test_the_member_session_can_be_ended_and_times_out(
    client: TestClient, world: World, clock: FakeClock, booth: Booth
) -> None:
    first = _tap(client, world, clock, ZHANG_CARD)
    assert first.display.link is not None
    _open(client, first.display.link)
    ended = client.post("/web/m/end", data={"csrf_token": _csrf(client)})
    assert ended.status_code == 200
    assert "已退出留言页" in ended.text
    gone = client.get("/web/m/")
    assert gone.status_code == 401
    assert 'data-code="booth_session_ended"' in gone.text

    second = _tap(client, world, clock, ZHANG_CARD)
    assert second.display.link is not None
    _open(client, second.display.link)
    assert client.get("/web/m/").status_code == 200
    clock.advance(minutes=16)
    assert client.get("/web/m/").status_code == 401


def test_a_post_without_the_session_token_is_refused(
    client: TestClient, world: World, clock: FakeClock, booth: Booth, engine: Engine
) -> None:
    receipt = _tap(client, world, clock, ZHANG_CARD)
    assert receipt.display.link is not None
    _open(client, receipt.display.link)
    response = client.post(
        "/web/m/messages",
        data={"csrf_token": "forged", "representative_id": str(booth.committee_rep), "body": "x"},
    )
    assert response.status_code == 403
    with unit_of_work(engine) as session:
        assert session.exec(select(BoothMessage)).all() == []


def test_an_anonymous_message_hides_the_name_from_the_representative_only(
    client: TestClient, world: World, clock: FakeClock, booth: Booth, engine: Engine
) -> None:
    receipt = _tap(client, world, clock, ZHANG_CARD)
    assert receipt.display.link is not None
    _open(client, receipt.display.link)
    assert _send(client, booth.committee_rep, "建议早高峰调整东西门通行方向", anonymous=True) == 303
    assert "留言已提交" in client.get("/web/m/?done=sent").text

    with unit_of_work(engine) as session:
        caller = _rep_caller(booth.committee_rep_user, "林代表")
        [message] = inbox(session, caller=caller, user_id=booth.committee_rep_user)
        assert message.sender_name == "匿名党员"
        assert message.org_name == ""
        stored = session.exec(select(BoothMessage)).one()
        assert stored.member_id == world.members["张三明"]  # kept, though not shown
        audit = session.exec(select(AuditEntry).where(AuditEntry.action == "booth.message.create")).one()
        assert '"anonymous": true' in audit.detail
        assert str(world.members["张三明"]) in audit.detail


def test_representatives_and_secretaries_see_only_their_messages(
    client: TestClient, world: World, clock: FakeClock, booth: Booth, engine: Engine
) -> None:
    receipt = _tap(client, world, clock, ZHANG_CARD)
    assert receipt.display.link is not None
    _open(client, receipt.display.link)
    # 钱代表 represents another branch: not offered to 张三明, and refused when sent by hand.
    refused = client.post(
        "/web/m/messages",
        data={"csrf_token": _csrf(client), "representative_id": str(booth.other_rep), "body": "你好"},
    )
    assert refused.status_code == 404
    assert "党代表不存在" in refused.text
    assert _send(client, booth.committee_rep, "楼道灯坏了") == 303

    with unit_of_work(engine) as session:
        message_id = session.exec(select(BoothMessage.id)).one()
        assert message_id is not None
        other = _rep_caller(booth.other_rep_user, "钱代表")
        assert inbox(session, caller=other, user_id=booth.other_rep_user) == []
        with pytest.raises(BoothMessageNotFound):
            read_message(
                session, message_id=message_id, caller=other, user_id=booth.other_rep_user, now=clock.now
            )
        # A secretary sees it only once it is forwarded to an organisation in their subtree.
        branch_secretary = Caller(
            actor=user_actor(999, "书记"),
            role=UserRole.SECRETARY,
            org_id=world.branch_id,
            scope=Scope(frozenset({world.branch_id, world.group_id})),
            may_approve=False,
        )
        assert inbox(session, caller=branch_secretary, user_id=999) == []


def test_a_reply_is_announced_at_the_next_tap_and_shown_on_the_phone(
    client: TestClient, world: World, clock: FakeClock, booth: Booth, engine: Engine
) -> None:
    receipt = _tap(client, world, clock, ZHANG_CARD)
    assert receipt.display.link is not None
    _open(client, receipt.display.link)
    assert _send(client, booth.committee_rep, "活动室空调不制冷") == 303
    with unit_of_work(engine) as session:
        message_id = session.exec(select(BoothMessage.id)).one()
        assert message_id is not None
        reply_to_message(
            session,
            message_id=message_id,
            body="已联系物业，本周内维修",
            caller=_rep_caller(booth.committee_rep_user, "林代表"),
            user_id=booth.committee_rep_user,
            now=clock.now,
        )
    clock.advance(minutes=1)
    told = _tap(client, world, clock, ZHANG_CARD)
    assert told.display.message == "您的留言有新回复"
    assert told.display.link is not None
    phone = TestClient(client.app)
    _open(phone, told.display.link)
    page = phone.get("/web/m/").text
    assert "已联系物业，本周内维修" in page
    assert "已回复" in page
    assert _tap(client, world, clock, ZHANG_CARD).display.message == "请用手机扫码留言"


def test_cards_that_are_not_an_active_members_get_no_link(
    client: TestClient, world: World, clock: FakeClock, booth: Booth
) -> None:
    stranger = _tap(client, world, clock, STRANGER_CARD)
    assert stranger.status == "rejected"
    assert stranger.code == "unknown_card"
    assert stranger.display.link is None


@pytest.fixture
def strict_client(settings: ServerSettings, engine: Engine, clock: FakeClock) -> Iterator[TestClient]:
    strict = settings.model_copy(
        update={"booth_links_per_card_per_day": 2, "booth_messages_per_card_per_day": 1}
    )
    with TestClient(create_app(strict, clock=clock)) as test_client:
        yield test_client


def test_daily_limits_per_card(
    strict_client: TestClient, world: World, clock: FakeClock, booth: Booth
) -> None:
    first = _tap(strict_client, world, clock, LI_CARD)
    assert first.display.link is not None
    _open(strict_client, first.display.link)
    assert _send(strict_client, booth.committee_rep, "第一条") == 303
    assert _send(strict_client, booth.committee_rep, "第二条") == 429
    page = strict_client.post(
        "/web/m/messages",
        data={
            "csrf_token": _csrf(strict_client),
            "representative_id": str(booth.committee_rep),
            "body": "第三条",
        },
    )
    assert page.status_code == 429
    assert "今日留言次数已达上限" in page.text
    assert "第三条" in page.text

    assert _tap(strict_client, world, clock, LI_CARD).status == "accepted"
    third = _tap(strict_client, world, clock, LI_CARD)
    assert third.status == "rejected"
    assert third.code == "booth_limit"
    assert third.display.link is None
    # Another card is counted on its own; the day is the last 24 hours.
    assert _tap(strict_client, world, clock, ZHAO_CARD).status == "accepted"
    clock.advance(hours=24, seconds=1)
    assert _tap(strict_client, world, clock, LI_CARD).status == "accepted"


def test_the_member_asks_leave_from_the_phone_into_the_secretarys_queue(
    client: TestClient, world: World, clock: FakeClock, booth: Booth, engine: Engine
) -> None:
    receipt = _tap(client, world, clock, ZHANG_CARD)
    assert receipt.display.link is not None
    _open(client, receipt.display.link)
    home = client.get("/web/m/").text
    assert "三月主题党日" in home  # the branch's meeting in an hour
    asked = client.post(
        "/web/m/leave",
        data={"csrf_token": _csrf(client), "event_id": str(world.event_id), "reason": "出差在外地"},
        follow_redirects=False,
    )
    assert asked.status_code == 303
    page = client.get("/web/m/?done=leave").text
    assert "请假已提交，请等待党支部审批" in page
    assert "已请假，待党支部审批" in page
    again = client.post(
        "/web/m/leave",
        data={"csrf_token": _csrf(client), "event_id": str(world.event_id), "reason": "再请一次"},
    )
    assert again.status_code == 409
    assert 'data-code="leave_already_requested"' in again.text
    with unit_of_work(engine) as session:
        leave = session.exec(select(LeaveRequest)).one()
        assert leave.member_id == world.members["张三明"]
        assert leave.status == LeaveStatus.PENDING
        audit = session.exec(select(AuditEntry).where(col(AuditEntry.action).startswith("leave."))).one()
        assert audit.actor == f"member:{world.members['张三明']}"


def test_the_members_page_counts_their_meetings_from_the_ledgers(
    client: TestClient, world: World, clock: FakeClock, booth: Booth, engine: Engine
) -> None:
    with unit_of_work(engine) as session:
        for month, paid in (("2025-01", 2000), ("2025-02", 0)):
            session.add(
                DuesMonth(
                    member_id=world.members["张三明"],
                    month=month,
                    standard_fen=2000,
                    paid_fen=paid,
                    source=DuesSource.XLSX,
                    updated_at=clock.now,
                )
            )
    clock.now = EVENT_START - timedelta(minutes=5)
    envelope = world.keys.seal(world.payload(ZHANG_CARD, at=clock.now))
    checked_in = client.post(
        "/api/v1/taps",
        content=TapBatch(envelopes=[envelope]).model_dump_json(),
        headers={"Content-Type": "application/json"},
    )
    assert checked_in.json()["receipts"][0]["display"]["message"] == "签到成功"
    clock.now = EVENT_END + timedelta(hours=1)
    receipt = _tap(client, world, clock, ZHANG_CARD)
    assert receipt.display.link is not None
    _open(client, receipt.display.link)
    page = client.get("/web/m/").text
    stats = re.search(r'<dl class="m-stats">(.*?)</dl>', page, re.S)
    assert stats is not None
    numbers = re.findall(r"<dt>(.*?)</dt><dd>(\d+)</dd>", stats.group(1))
    assert numbers == [("应参加", "1"), ("出席", "1"), ("请假", "0"), ("缺席", "0")]
    assert "三月主题党日" in page
    assert '1月</span><span class="m-outcome-present">已交 20.00元' in page
    assert '2月</span><span class="m-outcome-absent">应交 20.00元，已交 0.00元' in page


def test_forwarding_closing_and_retention(
    client: TestClient, world: World, clock: FakeClock, booth: Booth, engine: Engine
) -> None:
    receipt = _tap(client, world, clock, ZHANG_CARD)
    assert receipt.display.link is not None
    _open(client, receipt.display.link)
    assert _send(client, booth.committee_rep, "支部活动室周末能否开放") == 303
    rep = _rep_caller(booth.committee_rep_user, "林代表")
    secretary = Caller(
        actor=user_actor(999, "书记"),
        role=UserRole.SECRETARY,
        org_id=world.branch_id,
        scope=Scope(frozenset({world.branch_id, world.group_id})),
        may_approve=False,
    )
    with unit_of_work(engine) as session:
        message_id = session.exec(select(BoothMessage.id)).one()
        assert message_id is not None
        at = clock.now
        forward_message(
            session,
            org_id=world.branch_id,
            caller=rep,
            user_id=booth.committee_rep_user,
            message_id=message_id,
            now=at,
        )
        [seen] = inbox(session, caller=secretary, user_id=999)
        assert seen.status == BoothMessageStatus.FORWARDED
        close_message(
            session, outcome="周六上午开放", caller=secretary, user_id=999, message_id=message_id, now=at
        )
        with pytest.raises(BoothMessageClosed):
            reply_to_message(
                session,
                body="补充",
                caller=rep,
                user_id=booth.committee_rep_user,
                message_id=message_id,
                now=at,
            )
        actions = session.exec(
            select(AuditEntry.action).where(AuditEntry.object_type == "booth_message")
        ).all()
        assert list(actions) == ["booth.message.create", "booth.message.forward", "booth.message.close"]

        assert (
            purge_closed(
                session, now=clock.now + timedelta(days=29), retention=timedelta(days=30), caller=CLI_CALLER
            )
            == 0
        )
        assert (
            purge_closed(
                session, now=clock.now + timedelta(days=31), retention=timedelta(days=30), caller=CLI_CALLER
            )
            == 1
        )
        assert session.exec(select(BoothMessage)).all() == []
    assert "周六上午开放" not in client.get("/web/m/").text


def test_the_yearly_summary_counts_by_topic_and_time_to_answer(
    client: TestClient, world: World, clock: FakeClock, booth: Booth, engine: Engine
) -> None:
    receipt = _tap(client, world, clock, ZHANG_CARD)
    assert receipt.display.link is not None
    _open(client, receipt.display.link)
    for topic, body in (("problem", "东门早高峰拥堵"), ("suggestion", "建议增加读书角")):
        sent = client.post(
            "/web/m/messages",
            data={
                "csrf_token": _csrf(client),
                "representative_id": str(booth.committee_rep),
                "topic": topic,
                "body": body,
            },
            follow_redirects=False,
        )
        assert sent.status_code == 303
    rep = _rep_caller(booth.committee_rep_user, "林代表")
    organiser = Caller(
        actor=user_actor(998, "组织员"),
        role=UserRole.ORGANISER,
        org_id=world.committee_id,
        scope=Scope(frozenset({world.committee_id, world.branch_id, world.group_id, world.other_branch_id})),
        may_approve=True,
    )
    year_start, year_end = clock.now - timedelta(days=1), clock.now + timedelta(days=1)
    with unit_of_work(engine) as session:
        first = session.exec(select(BoothMessage).where(BoothMessage.topic == BoothTopic.PROBLEM)).one()
        assert first.id is not None
        reply_to_message(
            session,
            message_id=first.id,
            body="已协调交警",
            caller=rep,
            user_id=booth.committee_rep_user,
            now=clock.now + timedelta(hours=2),
        )
    with unit_of_work(engine) as session:
        summary = yearly_summary(session, caller=organiser, user_id=998, start=year_start, end=year_end)
        assert [s.name for s in summary] == ["林代表", "钱代表"]
        lin = summary[0]
        assert (lin.total, lin.answered, lin.closed) == (2, 1, 0)
        assert lin.by_topic[BoothTopic.PROBLEM] == 1
        assert lin.by_topic[BoothTopic.SUGGESTION] == 1
        assert lin.average_hours_to_answer == 2.0
        assert summary[1].total == 0
        own = yearly_summary(
            session, caller=rep, user_id=booth.committee_rep_user, start=year_start, end=year_end
        )
        assert [s.name for s in own] == ["林代表"]


# --- photos --------------------------------------------------------------------------------------


def _image(kind: str) -> bytes:
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 30)).save(buffer, format=kind)
    return buffer.getvalue()


def _send_with_photo(
    client: TestClient, representative_id: int, body: str, photo: tuple[str, bytes, str]
) -> Response:
    return client.post(
        "/web/m/messages",
        data={"csrf_token": _csrf(client), "representative_id": str(representative_id), "body": body},
        files={"photo": photo},
        follow_redirects=False,
    )


def _web_login(app_client: TestClient, username: str) -> TestClient:
    web = TestClient(app_client.app)
    form = web.get("/web/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf is not None
    signed_in = web.post(
        "/web/login",
        data={"username": username, "password": "representative-pass-1", "csrf_token": csrf.group(1)},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303, signed_in.text
    return web


def test_a_photo_goes_with_the_message_to_its_representative_and_back_to_the_member_only(
    client: TestClient, world: World, clock: FakeClock, booth: Booth, engine: Engine
) -> None:
    jpeg = _image("JPEG")
    receipt = _tap(client, world, clock, ZHANG_CARD)
    assert receipt.display.link is not None
    _open(client, receipt.display.link)
    sent = _send_with_photo(client, booth.committee_rep, "东门路灯不亮", ("路灯.jpg", jpeg, "image/jpeg"))
    assert sent.status_code == 303, sent.text
    with unit_of_work(engine) as session:
        message = session.exec(select(BoothMessage)).one()
        assert message.photo_id is not None
        stored = session.get(BoothPhoto, message.photo_id)
        assert stored is not None
        assert stored.data == jpeg
        assert stored.media_type == "image/jpeg"
        audit = session.exec(select(AuditEntry).where(AuditEntry.action == "booth.message.create")).one()
        assert '"media_type": "image/jpeg"' in audit.detail
        assert f'"size_bytes": {len(jpeg)}' in audit.detail

    # The member sees it on their own page.
    page = client.get("/web/m/")
    assert f'src="/web/m/messages/{message.id}/photo"' in page.text
    own = client.get(f"/web/m/messages/{message.id}/photo")
    assert own.status_code == 200
    assert own.content == jpeg
    assert own.headers["content-type"] == "image/jpeg"

    # Another member's phone, and a phone without a session, do not get it.
    other = _tap(client, world, clock, LI_CARD)
    assert other.display.link is not None
    li_phone = TestClient(client.app)
    _open(li_phone, other.display.link)
    assert li_phone.get(f"/web/m/messages/{message.id}/photo").status_code == 404
    assert TestClient(client.app).get(f"/web/m/messages/{message.id}/photo").status_code == 401

    # The representative it was written to sees it in the inbox; another representative gets 404.
    lin = _web_login(client, "linrep")
    assert "附照片" in lin.get("/web/booth").text
    assert f'src="/web/booth/{message.id}/photo"' in lin.get(f"/web/booth/{message.id}").text
    inbox_photo = lin.get(f"/web/booth/{message.id}/photo")
    assert inbox_photo.status_code == 200
    assert inbox_photo.content == jpeg
    qian = _web_login(client, "qianrep")
    refused = qian.get(f"/web/booth/{message.id}/photo")
    assert refused.status_code == 404
    assert jpeg not in refused.content


@pytest.mark.parametrize(
    ("file_name", "content", "status", "code", "says"),
    [
        (
            "照片.jpg",
            "这其实是一段文字，不是照片".encode(),
            400,
            "attachment_type_refused",
            "只能上传 JPEG、PNG 照片",
        ),
        ("扫描件.pdf", b"%PDF-1.7\n" + b"0" * 100, 400, "attachment_type_refused", "只能上传 JPEG、PNG 照片"),
        ("图.png", _image("JPEG"), 400, "attachment_type_refused", "内容却是JPEG 照片"),
        (
            "大.jpg",
            b"\xff\xd8\xff" + b"\x00" * MAX_PHOTO_BYTES,
            413,
            "attachment_too_large",
            "照片不能超过5 MB",
        ),
    ],
)
def test_a_refused_photo_keeps_the_text_and_stores_nothing(
    client: TestClient,
    world: World,
    clock: FakeClock,
    booth: Booth,
    engine: Engine,
    file_name: str,
    content: bytes,
    status: int,
    code: str,
    says: str,
) -> None:
    receipt = _tap(client, world, clock, ZHANG_CARD)
    assert receipt.display.link is not None
    _open(client, receipt.display.link)
    refused = _send_with_photo(
        client, booth.committee_rep, "西门早高峰太堵", (file_name, content, "image/jpeg")
    )
    assert refused.status_code == status, refused.text[:500]
    assert f'data-code="{code}"' in refused.text
    assert says in refused.text
    assert "西门早高峰太堵</textarea>" in refused.text  # what the member typed is still there
    with unit_of_work(engine) as session:
        assert session.exec(select(BoothMessage)).all() == []
        assert session.exec(select(BoothPhoto)).all() == []
    # Sending again without the photo goes through.
    assert _send(client, booth.committee_rep, "西门早高峰太堵") == 303


def test_an_empty_file_input_sends_the_message_without_a_photo(
    client: TestClient, world: World, clock: FakeClock, booth: Booth, engine: Engine
) -> None:
    receipt = _tap(client, world, clock, ZHANG_CARD)
    assert receipt.display.link is not None
    _open(client, receipt.display.link)
    sent = _send_with_photo(client, booth.committee_rep, "没有照片", ("", b"", "application/octet-stream"))
    assert sent.status_code == 303, sent.text
    with unit_of_work(engine) as session:
        assert session.exec(select(BoothMessage)).one().photo_id is None


def test_a_representatives_photo_is_shown_to_the_members_who_may_write_to_them(
    client: TestClient, world: World, clock: FakeClock, booth: Booth, engine: Engine
) -> None:
    png = _image("PNG")
    with unit_of_work(engine) as session, pytest.raises(AttachmentTypeRefused):
        set_representative_photo(
            session,
            representative_id=booth.committee_rep,
            photo=PhotoUpload("林代表.png", b"GIF89a not accepted"),
            now=clock.now,
            caller=CLI_CALLER,
        )
    with unit_of_work(engine) as session:
        for representative_id in (booth.committee_rep, booth.other_rep):
            set_representative_photo(
                session,
                representative_id=representative_id,
                photo=PhotoUpload("代表.png", png),
                now=clock.now,
                caller=CLI_CALLER,
            )
        assert session.exec(select(AuditEntry).where(AuditEntry.action == "booth.representative.photo")).all()

    receipt = _tap(client, world, clock, ZHANG_CARD)
    assert receipt.display.link is not None
    _open(client, receipt.display.link)
    page = client.get("/web/m/").text
    assert f'src="/web/m/representatives/{booth.committee_rep}/photo"' in page
    photo = client.get(f"/web/m/representatives/{booth.committee_rep}/photo")
    assert photo.status_code == 200
    assert photo.content == png
    assert photo.headers["content-type"] == "image/png"
    # 钱代表 is another branch's: not offered to 张三明, so neither is the photo.
    assert client.get(f"/web/m/representatives/{booth.other_rep}/photo").status_code == 404
