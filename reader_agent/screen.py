"""The kiosk screen: a local page for the kiosk's display, served by the agent on 127.0.0.1.

Run the display in Chromium's kiosk mode, pointed at the agent::

    ecard agent run --reader pcsc --state-dir /var/lib/ecard-agent --screen-port 8765
    chromium --kiosk --app=http://127.0.0.1:8765/

The page shows, in large Chinese text, the last tap's result (the masked name 张*明 and the
event, as the server answered, or 已离线记录), a clear offline banner, whether the reader is
working, and how many taps wait for upload. It updates without reloading: ``/events`` is a
Server-Sent Events stream of the whole screen state, pushed on every change; when the agent
stops, the page says so.

Only what the member may see is on it: the server's masked name and message, never a UID or
card number (not even masked). The server binds 127.0.0.1 only and answers only requests whose
``Host`` is the loopback address, so neither the network nor a web page (DNS rebinding) can read
it. It is a stdlib ``http.server`` on its own threads: the agent imports no web framework.

Routes: ``/`` the page, ``/screen.css``, ``/screen.js``, ``/state`` (JSON snapshot), ``/events``.
The page, its style sheet and script are static files in ``reader_agent/screen_assets/`` (package
data), read on first request and kept in memory.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from reader_agent.feedback import Feedback, FeedbackStatus
from reader_agent.heartbeat import HeartbeatOutcome, HeartbeatResult
from reader_agent.uploader import UploadOutcome, UploadResult
from schemas import ReaderState, TapMode

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
KEEPALIVE_S = 15.0  # an SSE comment this often keeps proxies and the browser from giving up
RESULT_SHOWN_S = 20.0  # how long a tap's result stays before the page returns to "请刷卡"
QR_SHOWN_S = 90.0  # a 留言亭 QR code stays longer: the member has to take out their phone
QR_CAPTION = "请用手机扫码，二维码几分钟内有效，只能打开一次"

MODE_LABELS: dict[TapMode, str] = {
    TapMode.CHECKIN: "签到",
    TapMode.TRANSFER_IN: "组织关系转入登记",
    TapMode.ENROL: "绑卡",
    TapMode.MESSAGE: "留言亭",
}
IDLE_PROMPTS: dict[TapMode, str] = {
    TapMode.CHECKIN: "请刷卡签到",
    TapMode.TRANSFER_IN: "请刷卡登记组织关系转入",
    TapMode.ENROL: "请刷需要绑定的卡",
    TapMode.MESSAGE: "请刷卡，用手机扫码留言",
}
READER_MESSAGES: dict[ReaderState, str] = {
    ReaderState.STARTING: "读卡器正在启动…",
    ReaderState.READY: "",
    ReaderState.UNAVAILABLE: "读卡器不可用，正在重试，请联系工作人员",
    ReaderState.DISCONNECTED: "读卡器已断开，正在重新连接",
    ReaderState.FAILED: "读卡器故障，正在重新连接",
}
_READER_STATES = {
    "reader_unavailable": ReaderState.UNAVAILABLE,
    "reader_disconnected": ReaderState.DISCONNECTED,
}

ASSETS: dict[str, tuple[str, str]] = {  # route → (file in screen_assets/, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/screen.css": ("screen.css", "text/css; charset=utf-8"),
    "/screen.js": ("screen.js", "text/javascript; charset=utf-8"),
}


class ScreenError(Exception):
    """The screen could not be served (e.g. its port is taken)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class ShownResult:
    """One tap's result as the member sees it."""

    number: int  # increases with every result, so the page knows a new tap from a refresh
    tone: str  # ok | info | warn | error
    headline: str
    member_name: str | None
    event_title: str | None
    detail: str
    at: datetime  # kiosk clock; the page shows it in its own (the same machine's) time zone
    shown_at: float  # monotonic
    link: str | None = None  # message mode: the one-time 留言亭 link, shown as a QR code
    qr: str | None = None  # that link as an SVG data URI (None without the qrcode package)


def shown_result(line: Feedback, *, number: int, at: datetime, shown_at: float) -> ShownResult:
    """What the screen says about one card line (the server's words when it answered)."""
    status = line.status
    if status is FeedbackStatus.ACCEPTED:
        tone, headline, detail = "ok", line.message, ""
    elif status is FeedbackStatus.DUPLICATE:
        tone, headline, detail = "info", line.message, ""
    elif status is FeedbackStatus.REJECTED:
        tone, headline, detail = "error", line.message, ""
    elif status is FeedbackStatus.OFFLINE:
        tone, headline, detail = "warn", "已离线记录", "网络恢复后自动上传，无需重复刷卡"
    elif status is FeedbackStatus.NOT_RECORDED:
        tone, headline, detail = "error", "本次刷卡未能记录", "请联系工作人员"
    else:  # READ_FAILED
        tone, headline, detail = "warn", "读卡失败", "请将卡平放在读卡区，重新刷卡"
    return ShownResult(
        number=number,
        tone=tone,
        headline=headline,
        member_name=line.member_name,
        event_title=line.event_title,
        detail=detail,
        at=at,
        shown_at=shown_at,
        link=line.link,
        qr=qr_data_uri(line.link) if line.link else None,
    )


def qr_data_uri(text: str) -> str | None:
    """A QR code of *text* as an SVG data URI, or None when the optional ``qrcode`` package (pure
    Python, in the agent's extra) is missing: the screen then shows the link as text."""
    try:
        import qrcode
        import qrcode.image.svg
    except ImportError:
        log.warning("qrcode is not installed: the screen shows the 留言亭 link as text")
        return None
    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=4)
    svg: bytes = image.to_string()
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


class Connectivity:
    """Whether the server is reachable, by the latest upload round or heartbeat, whichever came last."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._online: bool | None = None
        self._reason = ""

    def upload_result(self, result: UploadResult) -> None:
        if result.outcome is UploadOutcome.IDLE:
            return  # nothing was sent, so nothing was learned
        if result.outcome is UploadOutcome.DELIVERED:
            self._set(True, "")
        elif result.outcome is UploadOutcome.RETRY:
            self._set(False, "无法连接服务器")
        else:
            self._set(False, "服务器拒绝上传，请联系管理员")

    def heartbeat_result(self, result: HeartbeatResult) -> None:
        if result.outcome is HeartbeatOutcome.ACKNOWLEDGED:
            self._set(True, "")
        elif result.outcome is HeartbeatOutcome.FAILED:
            self._set(False, "无法连接服务器")
        else:
            self._set(False, "服务器拒绝本机，请联系管理员")

    def current(self) -> tuple[bool | None, str]:
        with self._lock:
            return self._online, self._reason

    def _set(self, online: bool, reason: str) -> None:
        with self._lock:
            self._online, self._reason = online, reason


class ScreenState:
    """Everything the page shows, versioned so each change is pushed once to every open page."""

    def __init__(
        self,
        *,
        kiosk_name: str,
        venue_name: str,
        mode: TapMode,
        now: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kiosk_name = kiosk_name
        self._venue_name = venue_name
        self._mode = mode
        self._now = now
        self._monotonic = monotonic
        self._changed = threading.Condition()
        self._version = 0
        self._closed = False
        self._reader = ReaderState.STARTING
        self._online: bool | None = None
        self._offline_reason = ""
        self._pending: int | None = None
        self._result: ShownResult | None = None
        self._results_shown = 0
        # Result numbers restart with the agent; an open page tells runs apart by this id.
        self._run_id = uuid.uuid4().hex

    def observe(self, line: Feedback) -> None:
        """Take in one feedback line of the run loop (a tap's result or a reader status)."""
        with self._changed:
            if line.status is FeedbackStatus.READY:
                self._reader = ReaderState.READY
            elif line.status is FeedbackStatus.READER_ERROR:
                self._reader = _READER_STATES.get(line.code or "", ReaderState.FAILED)
            elif line.about_a_card:
                self._reader = ReaderState.READY
                self._results_shown += 1
                self._result = shown_result(
                    line, number=self._results_shown, at=self._now(), shown_at=self._monotonic()
                )
                if line.status in (
                    FeedbackStatus.ACCEPTED,
                    FeedbackStatus.DUPLICATE,
                    FeedbackStatus.REJECTED,
                ):
                    # The server just answered: it is reachable, whatever the last heartbeat said.
                    self._online, self._offline_reason = True, ""
            else:
                return
            if line.pending is not None:
                self._pending = line.pending
            self._bump()

    def refresh(self, *, pending: int | None, online: bool | None, offline_reason: str) -> None:
        """Update the outbox depth and connectivity; pages hear about it only if something changed."""
        with self._changed:
            if (pending, online, offline_reason) == (self._pending, self._online, self._offline_reason):
                return
            self._pending, self._online, self._offline_reason = pending, online, offline_reason
            self._bump()

    def snapshot(self) -> dict[str, Any]:
        with self._changed:
            return self._snapshot()

    def wait_for_change(self, seen_version: int, timeout: float) -> dict[str, Any] | None:
        """The state once its version differs from *seen_version*; None on timeout or close."""
        with self._changed:
            self._changed.wait_for(lambda: self._closed or self._version != seen_version, timeout)
            if self._closed or self._version == seen_version:
                return None
            return self._snapshot()

    def close(self) -> None:
        """Wake every waiting stream so it can end (the agent is stopping)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    @property
    def closed(self) -> bool:
        with self._changed:
            return self._closed

    def _bump(self) -> None:
        self._version += 1
        self._changed.notify_all()

    def _snapshot(self) -> dict[str, Any]:
        result = self._result
        shown: dict[str, Any] | None = None
        if result is not None:
            shown = {
                "number": result.number,
                "tone": result.tone,
                "headline": result.headline,
                "member_name": result.member_name,
                "event_title": result.event_title,
                "detail": result.detail,
                "at": result.at.isoformat(),
                "age_s": round(self._monotonic() - result.shown_at, 1),
                "link": result.link,
                "qr": result.qr,
                "qr_caption": QR_CAPTION if result.link else "",
                "shown_s": QR_SHOWN_S if result.link else RESULT_SHOWN_S,
            }
        return {
            "version": self._version,
            "run_id": self._run_id,
            "kiosk_name": self._kiosk_name,
            "venue_name": self._venue_name,
            "mode": self._mode.value,
            "mode_label": MODE_LABELS[self._mode],
            "idle_prompt": IDLE_PROMPTS[self._mode],
            "online": self._online,
            "offline_reason": self._offline_reason,
            "pending": self._pending,
            "reader": self._reader.value,
            "reader_message": READER_MESSAGES[self._reader],
            "result": shown,
            "result_shown_s": RESULT_SHOWN_S,
        }


class ScreenServer:
    """Serves the screen on 127.0.0.1:*port* (0: any free port, for tests) from daemon threads."""

    def __init__(self, state: ScreenState, *, port: int) -> None:
        self._state = state
        self._requested_port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Start serving; returns the port.

        Raises:
            ScreenError: ``screen_port_unavailable`` when the port cannot be bound.
        """
        handler = _handler_class(self._state)
        try:
            httpd = ThreadingHTTPServer((LOOPBACK, self._requested_port), handler)
        except OSError as exc:
            raise ScreenError(
                "screen_port_unavailable",
                f"cannot serve the kiosk screen on {LOOPBACK}:{self._requested_port}: {exc.strerror}",
            ) from exc
        httpd.daemon_threads = True
        self._httpd = httpd
        # A short poll interval: stopping the agent waits for the serving loop to notice.
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="kiosk-screen", daemon=True
        )
        self._thread.start()
        return self.port

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("screen server not started")
        port: int = self._httpd.server_address[1]
        return port

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/"

    def stop(self) -> None:
        """Stop serving and end every open event stream."""
        self._state.close()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)


class ScreenRefresher:
    """Polls the outbox depth and connectivity once a second and hands them to the screen state.

    The outbox drains in the uploader's thread and the server comes and goes on its own, so the
    screen cannot wait for a feedback line to learn of either.
    """

    def __init__(
        self,
        state: ScreenState,
        *,
        pending: Callable[[], int],
        connectivity: Connectivity,
        interval_s: float = 1.0,
    ) -> None:
        self._state = state
        self._pending = pending
        self._connectivity = connectivity
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh_once(self) -> None:
        try:
            pending: int | None = self._pending()
        except Exception:
            log.exception("cannot count pending taps for the screen")
            pending = None
        online, reason = self._connectivity.current()
        self._state.refresh(pending=pending, online=online, offline_reason=reason)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="screen-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh_once()
            self._stop.wait(self._interval_s)


def _handler_class(state: ScreenState) -> type[BaseHTTPRequestHandler]:
    class ScreenRequestHandler(BaseHTTPRequestHandler):
        server_version = "ecard-kiosk-screen"

        def do_GET(self) -> None:
            if not _loopback_host(self.headers.get("Host", "")):
                # A page elsewhere that resolved its own name to 127.0.0.1 (DNS rebinding).
                self._send(HTTPStatus.FORBIDDEN, "text/plain; charset=utf-8", "仅限本机访问".encode())
                return
            path = self.path.split("?", 1)[0]
            if path in ASSETS:
                name, content_type = ASSETS[path]
                self._send(HTTPStatus.OK, content_type, asset(name))
            elif path == "/state":
                body = json.dumps(state.snapshot(), ensure_ascii=False).encode()
                self._send(HTTPStatus.OK, "application/json", body)
            elif path == "/events":
                self._stream()
            else:
                self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found")

        def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header(
                "Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
            )
            self.end_headers()
            self.wfile.write(body)

        def _stream(self) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            snapshot: dict[str, Any] | None = state.snapshot()
            seen = -1
            try:
                while snapshot is not None or not state.closed:
                    if snapshot is None:
                        self.wfile.write(b": keepalive\n\n")
                    else:
                        data = json.dumps(snapshot, ensure_ascii=False)
                        self.wfile.write(f"id: {snapshot['version']}\ndata: {data}\n\n".encode())
                        seen = snapshot["version"]
                    self.wfile.flush()
                    snapshot = state.wait_for_change(seen, KEEPALIVE_S)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the page was closed or reloaded

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("screen: " + format, *args)

    return ScreenRequestHandler


def _loopback_host(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]", 1)[0] + "]"
    return name in (LOOPBACK, "localhost")


@functools.cache
def asset(name: str) -> bytes:
    """One static file of the page, ``reader_agent/screen_assets/<name>``, read once and then cached."""
    return (resources.files("reader_agent") / "screen_assets" / name).read_bytes()
