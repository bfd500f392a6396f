"""The kiosk screen server over real HTTP on 127.0.0.1: the page, the state, the live event
stream, the offline indicator, and what it refuses to show or to whom."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from reader_agent.feedback import Feedback, FeedbackStatus
from reader_agent.heartbeat import HeartbeatOutcome, HeartbeatResult
from reader_agent.screen import (
    Connectivity,
    ScreenError,
    ScreenRefresher,
    ScreenServer,
    ScreenState,
    shown_result,
)
from reader_agent.uploader import UploadOutcome, UploadResult
from schemas import TapMode

CST = timezone(timedelta(hours=8))
NOW = datetime(2026, 3, 1, 9, 0, 5, tzinfo=CST)

ACCEPTED = Feedback(
    FeedbackStatus.ACCEPTED,
    "签到成功",
    seq=7,
    member_name="张*明",
    event_title="三月主题党日",
    pending=0,
    card="****8901",
)


def state(mode: TapMode = TapMode.CHECKIN) -> ScreenState:
    return ScreenState(kiosk_name="一号机", venue_name="党员活动室", mode=mode, now=lambda: NOW)


@pytest.fixture
def screen() -> Iterator[tuple[ScreenState, ScreenServer]]:
    shown = state()
    server = ScreenServer(shown, port=0)
    server.start()
    try:
        yield shown, server
    finally:
        server.stop()


class EventStream:
    """Reads ``data:`` events of an SSE response on a thread, so a test can wait for the next one."""

    def __init__(self, url: str) -> None:
        self._client = httpx.Client(timeout=httpx.Timeout(5, read=30))
        self._events: list[dict[str, object]] = []
        self._arrived = threading.Condition()
        self._response = self._client.send(self._client.build_request("GET", url), stream=True)
        self.content_type = self._response.headers["content-type"]
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        try:
            for line in self._response.iter_lines():
                if line.startswith("data: "):
                    with self._arrived:
                        self._events.append(json.loads(line[6:]))
                        self._arrived.notify_all()
        except httpx.HTTPError:
            pass

    def next_event(self, count: int, timeout: float = 5) -> dict[str, object]:
        """Wait until *count* events arrived; return the last."""
        with self._arrived:
            assert self._arrived.wait_for(lambda: len(self._events) >= count, timeout), self._events
            return self._events[count - 1]

    def close(self) -> None:
        self._response.close()
        self._client.close()


class TestPage:
    def test_page_and_assets_are_served_in_chinese(self, screen: tuple[ScreenState, ScreenServer]) -> None:
        _, server = screen
        page = httpx.get(server.url, timeout=5)
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "党员e通卡签到" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert httpx.get(f"{server.url}screen.js", timeout=5).status_code == 200
        assert httpx.get(f"{server.url}screen.css", timeout=5).status_code == 200
        assert httpx.get(f"{server.url}nothing", timeout=5).status_code == 404

    def test_state_snapshot(self, screen: tuple[ScreenState, ScreenServer]) -> None:
        _, server = screen
        snapshot = httpx.get(f"{server.url}state", timeout=5).json()
        assert snapshot["kiosk_name"] == "一号机"
        assert (snapshot["mode_label"], snapshot["idle_prompt"]) == ("签到", "请刷卡签到")
        assert (snapshot["online"], snapshot["reader"], snapshot["result"]) == (None, "starting", None)

    def test_other_host_names_are_refused(self, screen: tuple[ScreenState, ScreenServer]) -> None:
        """A page that resolved its own name to 127.0.0.1 (DNS rebinding) cannot read the screen."""
        _, server = screen
        refused = httpx.get(f"{server.url}state", headers={"Host": "attacker.example"}, timeout=5)
        assert refused.status_code == 403
        allowed = httpx.get(f"{server.url}state", headers={"Host": f"localhost:{server.port}"}, timeout=5)
        assert allowed.status_code == 200

    def test_listens_on_loopback_only(self, screen: tuple[ScreenState, ScreenServer]) -> None:
        _, server = screen
        assert server.url.startswith("http://127.0.0.1:")
        with socket.socket() as probe:
            probe.settimeout(1)
            outward = _outward_address()
            if outward is not None:
                assert probe.connect_ex((outward, server.port)) != 0

    def test_port_in_use(self, screen: tuple[ScreenState, ScreenServer]) -> None:
        _, server = screen
        with pytest.raises(ScreenError) as excinfo:
            ScreenServer(state(), port=server.port).start()
        assert excinfo.value.code == "screen_port_unavailable"


class TestLiveUpdates:
    def test_a_tap_is_pushed_to_the_open_page(self, screen: tuple[ScreenState, ScreenServer]) -> None:
        """The stream starts with the current state; a tap's result follows at once, with the masked
        name and no card identifier (not even the masked tail the terminal line shows)."""
        shown, server = screen
        stream = EventStream(f"{server.url}events")
        try:
            assert stream.content_type.startswith("text/event-stream")
            assert stream.next_event(1)["result"] is None
            shown.observe(Feedback(FeedbackStatus.READY, "请刷卡 (ready: scripted)"))
            assert stream.next_event(2)["reader"] == "ready"
            shown.observe(ACCEPTED)
            event = stream.next_event(3)
        finally:
            stream.close()
        result = event["result"]
        assert isinstance(result, dict)
        assert (result["tone"], result["headline"], result["member_name"], result["event_title"]) == (
            "ok",
            "签到成功",
            "张*明",
            "三月主题党日",
        )
        assert result["at"] == NOW.isoformat()
        assert event["online"] is True  # the server just answered
        assert "8901" not in json.dumps(event)

    def test_stopping_the_server_ends_the_stream(self, screen: tuple[ScreenState, ScreenServer]) -> None:
        shown, server = screen
        with httpx.Client(timeout=5) as client, client.stream("GET", f"{server.url}events") as response:
            lines = response.iter_lines()
            assert next(lines).startswith("id: ")
            server.stop()
            assert list(lines)[-1:] in ([], [""])
        assert shown.closed


class TestConnectivity:
    def test_offline_indicator_and_pending_count(self) -> None:
        """Failed uploads make the screen offline with the taps waiting; a heartbeat brings it back."""
        shown = state()
        connectivity = Connectivity()
        pending = [3]
        refresher = ScreenRefresher(shown, pending=lambda: pending[0], connectivity=connectivity)

        refresher.refresh_once()
        assert (shown.snapshot()["online"], shown.snapshot()["pending"]) == (None, 3)
        connectivity.upload_result(UploadResult(UploadOutcome.RETRY, code="server_unreachable"))
        refresher.refresh_once()
        assert (shown.snapshot()["online"], shown.snapshot()["offline_reason"]) == (False, "无法连接服务器")
        connectivity.upload_result(UploadResult(UploadOutcome.IDLE))  # nothing sent: nothing learned
        refresher.refresh_once()
        assert shown.snapshot()["online"] is False
        connectivity.heartbeat_result(HeartbeatResult(HeartbeatOutcome.ACKNOWLEDGED, counter=1))
        pending[0] = 0
        refresher.refresh_once()
        assert (shown.snapshot()["online"], shown.snapshot()["pending"]) == (True, 0)
        connectivity.upload_result(UploadResult(UploadOutcome.INCOMPATIBLE, code="http_422"))
        refresher.refresh_once()
        assert shown.snapshot()["offline_reason"] == "服务器拒绝上传，请联系管理员"

    def test_unchanged_refresh_wakes_nobody(self) -> None:
        shown = state()
        shown.refresh(pending=0, online=True, offline_reason="")
        version = shown.snapshot()["version"]
        shown.refresh(pending=0, online=True, offline_reason="")
        assert shown.wait_for_change(version, timeout=0.05) is None


@pytest.mark.parametrize(
    ("line", "tone", "headline", "detail"),
    [
        (ACCEPTED, "ok", "签到成功", ""),
        (
            Feedback(FeedbackStatus.DUPLICATE, "已签到，无需重复刷卡", seq=1),
            "info",
            "已签到，无需重复刷卡",
            "",
        ),
        (
            Feedback(FeedbackStatus.REJECTED, "未登记的卡，请联系组织委员", seq=1),
            "error",
            "未登记的卡，请联系组织委员",
            "",
        ),
        (
            Feedback(FeedbackStatus.OFFLINE, "已离线记录，2 条待上传 (recorded offline, 2 waiting)", seq=1),
            "warn",
            "已离线记录",
            "网络恢复后自动上传，无需重复刷卡",
        ),
        (
            Feedback(FeedbackStatus.NOT_RECORDED, "x", code="outbox_write_failed"),
            "error",
            "本次刷卡未能记录",
            "请联系工作人员",
        ),
        (
            Feedback(FeedbackStatus.READ_FAILED, "x", code="card_timeout"),
            "warn",
            "读卡失败",
            "请将卡平放在读卡区，重新刷卡",
        ),
    ],
)
def test_what_the_member_reads(line: Feedback, tone: str, headline: str, detail: str) -> None:
    """Server verdicts in the server's words; the kiosk's own states in plain Chinese (no English)."""
    shown = shown_result(line, number=1, at=NOW, shown_at=0.0)
    assert (shown.tone, shown.headline, shown.detail) == (tone, headline, detail)


def test_enrol_mode_prompt() -> None:
    snapshot = state(TapMode.ENROL).snapshot()
    assert (snapshot["mode_label"], snapshot["idle_prompt"]) == ("绑卡", "请刷需要绑定的卡")


def test_reader_errors_are_shown() -> None:
    shown = state()
    shown.observe(Feedback(FeedbackStatus.READER_ERROR, "x", code="reader_disconnected"))
    assert shown.snapshot()["reader_message"] == "读卡器已断开，正在重新连接"
    shown.observe(Feedback(FeedbackStatus.READY, "请刷卡"))
    assert shown.snapshot()["reader_message"] == ""


def _outward_address() -> str | None:
    """This machine's address on its default route, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        try:
            udp.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent for a UDP connect
            address: str = udp.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_message_mode_shows_the_link_as_a_qr_code() -> None:
    """The server's one-time 留言亭 link becomes an SVG QR code (decoded from the real page in
    tests/web/test_booth_kiosk.py), and stays on screen long enough to take out a phone."""
    shown = state(TapMode.MESSAGE)
    assert shown.snapshot()["idle_prompt"] == "请刷卡，用手机扫码留言"
    link = "https://ecard.example.cn/web/m/open/Vq3XwS0dYp7kL2mN4bR8tU6zAe1Hc9Jf"
    shown.observe(
        Feedback(
            FeedbackStatus.ACCEPTED, "请用手机扫码留言", seq=3, member_name="张*明", pending=0, link=link
        )
    )
    result = shown.snapshot()["result"]
    assert result["link"] == link
    assert result["qr"].startswith("data:image/svg+xml;base64,")
    assert result["qr_caption"] == "请用手机扫码，二维码几分钟内有效，只能打开一次"
    assert result["shown_s"] > shown.snapshot()["result_shown_s"]
    shown.observe(ACCEPTED)
    plain = shown.snapshot()["result"]
    assert (plain["link"], plain["qr"], plain["qr_caption"]) == (None, None, "")
    assert "link" not in json.loads(ACCEPTED.to_json())
