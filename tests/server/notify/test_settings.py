"""The channels as an operator configures them (ECARD_SMTP_*, ECARD_WEBHOOK_TIMEOUT)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import SecretStr, ValidationError
from sqlalchemy import Engine

from server.caller import CLI_CALLER
from server.config import ServerSettings
from server.db import unit_of_work
from server.notify.channels import Channels
from server.notify.service import DeliveryRun, DigestItem, deliver_due, queue_digests, set_user_email
from server.users.service import add_user
from server.vocabulary import UserRole
from tests.server.factories import SHANGHAI, World
from tests.server.notify.conftest import _free_port

NOW = datetime(2026, 12, 6, 7, 0, tzinfo=SHANGHAI)
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
SMTP_PASSWORD = "smtp-password-9c1f"


class _Inbox:
    def __init__(self) -> None:
        self.contents: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.contents.append(envelope.original_content or b"")
        return "250 OK"


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == b"mailer"
        and data.password == SMTP_PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def authenticating_smtp() -> Iterator[tuple[int, _Inbox]]:
    inbox = _Inbox()
    port = _free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=_authenticate,
        auth_required=True,
        auth_require_tls=False,  # a test on localhost; production servers take STARTTLS or SMTPS
    )
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


def test_email_goes_out_through_the_configured_server_with_sign_in(
    engine: Engine, world: World, settings: ServerSettings, authenticating_smtp: tuple[int, _Inbox]
) -> None:
    port, inbox = authenticating_smtp
    configured = settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_from": "党建e家 <noreply@djej.example.cn>",
            "smtp_user": "mailer",
            "smtp_password": SecretStr(SMTP_PASSWORD),
        }
    )
    with unit_of_work(engine) as session:
        user = add_user(
            session,
            username="zhang",
            display_name="张书记",
            password="correct horse battery",
            role=UserRole.SECRETARY,
            org_id=world.branch_id,
            now=NOW,
            caller=CLI_CALLER,
        )
        assert user.id is not None
        set_user_email(
            session, user_id=user.id, address="zhang@branch.example.cn", caller=CLI_CALLER, now=NOW
        )
        queue_digests(
            session,
            [
                DigestItem(
                    org_id=world.branch_id, level="提示", title="组织生活", message="请上传十一月的会议记录。"
                )
            ],
            now=NOW,
            tz=SHANGHAI,
        )
    with unit_of_work(engine) as session:
        assert deliver_due(session, now=NOW, channels=configured) == DeliveryRun(sent=1)

    [raw] = inbox.contents
    message = message_from_bytes(raw, policy=policy.default)
    assert "请上传十一月的会议记录" in message.get_content()  # type: ignore[attr-defined]
    assert message["From"].addresses[0].addr_spec == "noreply@djej.example.cn"


def test_a_wrong_smtp_password_is_a_reason_not_a_leak(
    engine: Engine, world: World, settings: ServerSettings, authenticating_smtp: tuple[int, _Inbox]
) -> None:
    from server.notify.service import list_deliveries

    port, _ = authenticating_smtp
    configured = settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_from": "noreply@djej.example.cn",
            "smtp_user": "mailer",
            "smtp_password": SecretStr("wrong-password-1234"),
        }
    )
    with unit_of_work(engine) as session:
        user = add_user(
            session,
            username="zhang",
            display_name="张书记",
            password="correct horse battery",
            role=UserRole.SECRETARY,
            org_id=world.branch_id,
            now=NOW,
            caller=CLI_CALLER,
        )
        assert user.id is not None
        set_user_email(
            session, user_id=user.id, address="zhang@branch.example.cn", caller=CLI_CALLER, now=NOW
        )
        queue_digests(
            session, [DigestItem(world.branch_id, "提示", "组织生活", "请上传记录。")], now=NOW, tz=SHANGHAI
        )
    with unit_of_work(engine) as session:
        assert deliver_due(session, now=NOW, channels=configured) == DeliveryRun(retried=1)
        [shown] = list_deliveries(session, caller=CLI_CALLER)
    assert shown.last_error.startswith("邮件服务器登录失败")
    assert "wrong-password" not in shown.last_error


def test_no_smtp_host_means_no_email_channel(tmp_path: Path) -> None:
    channels = Channels.from_settings(ServerSettings(data_dir=tmp_path))
    try:
        assert channels.email is None
    finally:
        channels.close()


def test_an_smtp_host_needs_a_sender(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="ECARD_SMTP_FROM"):
        ServerSettings(data_dir=tmp_path, smtp_host="mail.example.cn")


def test_the_smtp_password_is_not_shown(tmp_path: Path) -> None:
    settings = ServerSettings(
        data_dir=tmp_path,
        smtp_host="mail.example.cn",
        smtp_from="a@example.cn",
        smtp_password=SecretStr("hunter2hunter2"),
    )
    assert "hunter2hunter2" not in repr(settings)
    assert "hunter2hunter2" not in repr(Channels.from_settings(settings).email.config)  # type: ignore[union-attr]
