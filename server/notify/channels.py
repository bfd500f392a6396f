"""The two ways a message leaves the server: e-mail over SMTP and a signed group-robot webhook.

Every library failure (socket errors, timeouts, TLS, SMTP replies, HTTP errors) is translated
here into :class:`ChannelError`, whose message is short, in Chinese, and holds no secret: no
password, no webhook secret, no robot URL (a 企业微信 robot's URL carries its key).

The webhook signature (docs/notifications.md): ``X-Ecard-Timestamp`` is the Unix time in seconds
and ``X-Ecard-Signature`` is ``sha256=`` followed by the hex HMAC-SHA256, keyed with the shared
secret, of ``timestamp + "\\n" + body`` (the exact bytes of the request body).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from server.config import ServerSettings

TIMESTAMP_HEADER = "X-Ecard-Timestamp"
SIGNATURE_HEADER = "X-Ecard-Signature"
SIGNATURE_PREFIX = "sha256="
MAX_ERROR_CHARS = 300
EMAIL_DISABLED_REASON = "未配置邮件服务器（ECARD_SMTP_HOST），邮件暂不发送"


class ChannelError(Exception):
    """A message could not be sent; ``message`` says why, ``http_status`` is the answer's status
    when the receiver answered at all."""

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        self.message = message[:MAX_ERROR_CHARS]
        self.http_status = http_status
        super().__init__(self.message)


def sign_webhook(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Ecard-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"\n" + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def _describe(exc: BaseException) -> str:
    """The exception's kind and first words, without anything a caller passed in."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    sender: str
    user: str = ""
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    use_ssl: bool = False
    timeout: float = 10.0


class EmailChannel:
    """Sends one plain-text e-mail per call over a connection of its own (UTF-8 subject and body)."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def send(self, *, to: str, subject: str, body: str, now: datetime) -> None:
        """Raises ChannelError when the server cannot be reached or refuses the message."""
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = self.config.sender
        message["To"] = to
        message["Date"] = format_datetime(now)
        message["Message-ID"] = make_msgid(domain=self.config.sender.rpartition("@")[2] or None)
        message.set_content(body)
        config = self.config
        try:
            smtp: smtplib.SMTP
            if config.use_ssl:
                smtp = smtplib.SMTP_SSL(
                    config.host, config.port, timeout=config.timeout, context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
            with smtp:
                if config.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if config.user:
                    smtp.login(config.user, config.password or "")
                refused = smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = ", ".join(str(code) for code, _ in exc.recipients.values())
            raise ChannelError(f"邮件服务器拒收收件人（SMTP {codes}）") from None
        except smtplib.SMTPAuthenticationError as exc:
            raise ChannelError(f"邮件服务器登录失败（SMTP {exc.smtp_code}）") from None
        except smtplib.SMTPResponseException as exc:
            reply = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
            raise ChannelError(f"邮件服务器拒绝（SMTP {exc.smtp_code} {reply[:120]}）") from None
        except (smtplib.SMTPException, OSError) as exc:  # OSError: refused, timeouts, TLS, DNS
            raise ChannelError(f"无法连接邮件服务器：{_describe(exc)}") from None
        if refused:
            raise ChannelError("邮件服务器拒收收件人")


class WebhookChannel:
    """POSTs signed JSON to group robots; one HTTP client (and its connections) per channel."""

    def __init__(self, *, timeout: float, transport: httpx.BaseTransport | None = None) -> None:
        self._client = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)

    def close(self) -> None:
        self._client.close()

    def send(self, *, url: str, secret: str | None, payload: dict[str, object], now: datetime) -> int:
        """Send ``payload``; returns the HTTP status. Raises ChannelError unless the receiver
        answered 2xx and, when it answers a robot's JSON, ``errcode`` 0."""
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = str(int(now.timestamp()))
        headers = {"Content-Type": "application/json; charset=utf-8", TIMESTAMP_HEADER: timestamp}
        if secret:
            headers[SIGNATURE_HEADER] = sign_webhook(secret, timestamp, body)
        try:
            response = self._client.post(url, content=body, headers=headers)
        except httpx.TimeoutException:
            raise ChannelError("群机器人接口超时") from None
        except httpx.HTTPError as exc:  # connection refused, DNS, TLS, protocol errors
            raise ChannelError(f"无法连接群机器人接口：{type(exc).__name__}") from None
        except httpx.InvalidURL:
            raise ChannelError("群机器人地址不正确") from None
        status = response.status_code
        if not 200 <= status < 300:
            raise ChannelError(f"群机器人接口返回 HTTP {status}", http_status=status)
        errcode = _robot_errcode(response)
        if errcode:
            raise ChannelError(f"群机器人接口返回错误码 {errcode}", http_status=status)
        return status


def _robot_errcode(response: httpx.Response) -> int | None:
    """企业微信 and 钉钉 answer 200 with ``{"errcode": 0}``; a non-zero code is a refusal."""
    try:
        data = response.json()
    except ValueError:
        return None
    code = data.get("errcode") if isinstance(data, dict) else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


@dataclass
class Channels:
    """The channels of one delivery run. ``email`` is None when no SMTP server is configured:
    e-mail deliveries then stay queued, with :data:`EMAIL_DISABLED_REASON` as their last error."""

    webhook: WebhookChannel
    email: EmailChannel | None = None

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> Channels:
        email = None
        if settings.smtp_host:
            email = EmailChannel(
                SmtpConfig(
                    host=settings.smtp_host,
                    port=settings.smtp_port,
                    sender=settings.smtp_from,
                    user=settings.smtp_user,
                    password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
                    starttls=settings.smtp_starttls,
                    use_ssl=settings.smtp_ssl,
                    timeout=settings.smtp_timeout,
                )
            )
        return cls(webhook=WebhookChannel(timeout=settings.webhook_timeout), email=email)

    def close(self) -> None:
        self.webhook.close()
