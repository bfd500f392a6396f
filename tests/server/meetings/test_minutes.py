"""会议记录: written, attached to, signed off and then locked; scoped; audited; files checked by content."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from server.audit.service import list_entries
from server.caller import UNSCOPED, Actor, Caller
from server.db import unit_of_work
from server.errors import DomainError
from server.meetings.attachments import MAX_ATTACHMENT_BYTES, MAX_ATTACHMENTS
from server.meetings.service import (
    add_attachment,
    read_attachment,
    read_minutes,
    remove_attachment,
    save_minutes,
    sign_off_minutes,
)
from server.orgs.service import subtree_scope
from server.vocabulary import UserRole
from tests.server.factories import EVENT_END, EVENT_START, World
from tests.server.ledgers.helpers import meeting

AFTER = EVENT_END + timedelta(hours=1)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 200 + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 100
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n%%EOF\n"


def caller(engine: Engine, org_id: int, role: UserRole = UserRole.SECRETARY, name: str = "陈书记") -> Caller:
    with Session(engine) as session:
        scope = subtree_scope(session, org_id)
    return Caller(actor=Actor("user:9", name), role=role, org_id=org_id, scope=scope, may_approve=False)


def refusal(engine: Engine, action: Callable[[Session], object]) -> DomainError:
    with pytest.raises(DomainError) as excinfo, unit_of_work(engine) as session:
        action(session)
    return excinfo.value


def test_write_attach_sign_off_then_nothing_changes(engine: Engine, world: World) -> None:
    secretary = caller(engine, world.branch_id)
    event_id = world.event_id
    with unit_of_work(engine) as session:
        save_minutes(
            session,
            event_id=event_id,
            agenda="一、学习党章\r\n二、讨论发展对象  ",
            minutes="张三明主持会议。\n全体党员学习了党章第一章。",
            resolutions="同意将王五列为发展对象",
            now=AFTER,
            caller=secretary,
        )
        add_attachment(
            session, event_id=event_id, file_name="合影.jpg", data=JPEG, now=AFTER, caller=secretary
        )
        add_attachment(
            session, event_id=event_id, file_name="记录本.pdf", data=PDF, now=AFTER, caller=secretary
        )
    with Session(engine) as session:
        minutes = read_minutes(session, event_id=event_id, caller=secretary)
        assert minutes.record is not None
        assert minutes.record.agenda == "一、学习党章\n二、讨论发展对象"  # CRLF and trailing spaces tidied
        assert [(a.file_name, a.media_type) for a in minutes.attachments] == [
            ("合影.jpg", "image/jpeg"),
            ("记录本.pdf", "application/pdf"),
        ]
        first = minutes.attachments[0]
        assert first.id is not None
        assert (
            read_attachment(session, event_id=event_id, attachment_id=first.id, caller=secretary)[1] == JPEG
        )
        assert first.sha256 == hashlib.sha256(JPEG).hexdigest()
        assert not minutes.locked

    with unit_of_work(engine) as session:
        sign_off_minutes(session, event_id=event_id, now=AFTER, caller=secretary)

    edits: list[Callable[[Session], object]] = [
        lambda s: save_minutes(
            s, event_id=event_id, agenda="改", minutes="改", resolutions="", now=AFTER, caller=secretary
        ),
        lambda s: add_attachment(
            s, event_id=event_id, file_name="a.png", data=PNG, now=AFTER, caller=secretary
        ),
        lambda s: remove_attachment(
            s, event_id=event_id, attachment_id=first.id or 0, now=AFTER, caller=secretary
        ),
        lambda s: sign_off_minutes(s, event_id=event_id, now=AFTER, caller=secretary),
    ]
    for edit in edits:
        refused = refusal(engine, edit)
        assert refused.code == "minutes_locked"
        assert "锁定" in refused.message
    with Session(engine) as session:
        after = read_minutes(session, event_id=event_id, caller=secretary)
        assert after.locked
        assert after.record is not None
        assert after.record.minutes.startswith("张三明主持会议")
        assert len(after.attachments) == 2
        actions = [
            e.action
            for e in list_entries(session, scope=UNSCOPED, object_type="event")
            if e.object_id == str(event_id)
        ]
    assert actions.count("minutes.attach") == 2
    assert "minutes.save" in actions
    assert "minutes.lock" in actions


def test_sign_off_needs_a_secretary_a_started_meeting_and_minutes(engine: Engine, world: World) -> None:
    secretary = caller(engine, world.branch_id)
    organiser = caller(engine, world.committee_id, UserRole.ORGANISER, "刘组织员")
    event_id = world.event_id
    empty = refusal(engine, lambda s: sign_off_minutes(s, event_id=event_id, now=AFTER, caller=secretary))
    assert empty.code == "minutes_incomplete"
    with unit_of_work(engine) as session:
        save_minutes(
            session,
            event_id=event_id,
            agenda="",
            minutes="会议内容",
            resolutions="",
            now=AFTER,
            caller=organiser,
        )
    early = refusal(
        engine,
        lambda s: sign_off_minutes(
            s, event_id=event_id, now=EVENT_START - timedelta(hours=1), caller=secretary
        ),
    )
    assert (early.code, early.message) == ("minutes_incomplete", "会议还没有开始，不能签发会议记录")
    forbidden = refusal(engine, lambda s: sign_off_minutes(s, event_id=event_id, now=AFTER, caller=organiser))
    assert forbidden.code == "sign_off_forbidden"
    assert forbidden.http_status == 403


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("照片.jpg", b"GIF89a" + b"\x00" * 50, "attachment_type_refused"),  # a GIF by content
        ("扫描.pdf", b"<html><script>alert(1)</script>", "attachment_type_refused"),  # HTML named .pdf
        ("照片.png", JPEG, "attachment_type_refused"),  # a JPEG named .png
        ("照片.heic", JPEG, "attachment_type_refused"),  # a JPEG under a name we would not serve
        ("空.jpg", b"", "attachment_type_refused"),
        ("大.jpg", b"\xff\xd8\xff" + b"\x00" * MAX_ATTACHMENT_BYTES, "attachment_too_large"),
    ],
)
def test_attachments_are_checked_by_content_and_size(
    engine: Engine, world: World, name: str, data: bytes, code: str
) -> None:
    secretary = caller(engine, world.branch_id)
    refused = refusal(
        engine,
        lambda s: add_attachment(
            s, event_id=world.event_id, file_name=name, data=data, now=AFTER, caller=secretary
        ),
    )
    assert refused.code == code
    with Session(engine) as session:
        assert read_minutes(session, event_id=world.event_id, caller=secretary).attachments == []


def test_an_attachment_at_the_size_limit_and_a_windows_path_name(engine: Engine, world: World) -> None:
    secretary = caller(engine, world.branch_id)
    data = PNG + b"\x00" * (MAX_ATTACHMENT_BYTES - len(PNG))
    with unit_of_work(engine) as session:
        attachment = add_attachment(
            session,
            event_id=world.event_id,
            file_name="C:\\Users\\书记\\扫描件.PNG",
            data=data,
            now=AFTER,
            caller=secretary,
        )
    assert (attachment.file_name, attachment.size_bytes) == ("扫描件.PNG", MAX_ATTACHMENT_BYTES)


def test_the_number_of_attachments_is_bounded(engine: Engine, world: World) -> None:
    secretary = caller(engine, world.branch_id)
    with unit_of_work(engine) as session:
        for index in range(MAX_ATTACHMENTS):
            add_attachment(
                session,
                event_id=world.event_id,
                file_name=f"{index}.png",
                data=PNG,
                now=AFTER,
                caller=secretary,
            )
    refused = refusal(
        engine,
        lambda s: add_attachment(
            s, event_id=world.event_id, file_name="more.png", data=PNG, now=AFTER, caller=secretary
        ),
    )
    assert refused.code == "too_many_attachments"


def test_another_branch_sees_neither_the_record_nor_its_files(engine: Engine, world: World) -> None:
    secretary = caller(engine, world.branch_id)
    stranger = caller(engine, world.other_branch_id, name="赵书记")
    with unit_of_work(engine) as session:
        save_minutes(
            session,
            event_id=world.event_id,
            agenda="",
            minutes="内部讨论",
            resolutions="",
            now=AFTER,
            caller=secretary,
        )
        attachment = add_attachment(
            session, event_id=world.event_id, file_name="a.png", data=PNG, now=AFTER, caller=secretary
        )
    assert attachment.id is not None
    attempts: list[Callable[[Session], object]] = [
        lambda s: read_minutes(s, event_id=world.event_id, caller=stranger),
        lambda s: read_attachment(
            s, event_id=world.event_id, attachment_id=attachment.id or 0, caller=stranger
        ),
        lambda s: save_minutes(
            s, event_id=world.event_id, agenda="", minutes="篡改", resolutions="", now=AFTER, caller=stranger
        ),
        lambda s: add_attachment(
            s, event_id=world.event_id, file_name="b.png", data=PNG, now=AFTER, caller=stranger
        ),
        lambda s: remove_attachment(
            s, event_id=world.event_id, attachment_id=attachment.id or 0, now=AFTER, caller=stranger
        ),
        lambda s: sign_off_minutes(s, event_id=world.event_id, now=AFTER, caller=stranger),
    ]
    for attempt in attempts:
        assert refusal(engine, attempt).code == "event_not_found"


def test_an_attachment_is_found_only_under_its_own_event(engine: Engine, world: World) -> None:
    """A valid attachment id under another visible event's URL is not found (no cross-reading)."""
    admin = caller(engine, world.committee_id, UserRole.ADMIN, "管理员")
    with unit_of_work(engine) as session:
        attachment = add_attachment(
            session, event_id=world.event_id, file_name="a.png", data=PNG, now=AFTER, caller=admin
        )

    other_event = meeting(engine, world, "另一场活动", EVENT_START + timedelta(days=3))
    refused = refusal(
        engine,
        lambda s: read_attachment(s, event_id=other_event, attachment_id=attachment.id or 0, caller=admin),
    )
    assert refused.code == "attachment_not_found"
