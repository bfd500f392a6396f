"""``ecard server`` (run, migrate) and ``ecard admin`` (organisations, members, cards, venues,
events, kiosks, tokens).

Scripts drive the admin verbs: each prints one JSON object with ``--json`` (else one short line),
exits 0 on success, 1 on a refusal (``{"error": code, "detail": message}`` on stdout with
``--json``, a line on stderr otherwise) and 2 on bad usage or configuration. The database is
``--db``, else ``ECARD_DATABASE_URL``, else SQLite under ``ECARD_DATA_DIR``; every verb migrates it
first. Only typer and the vocabulary are imported here: the server stack loads when a command runs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, tzinfo
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from server.vocabulary import EventKind, MemberCategory, OrgKind, TokenRole

if TYPE_CHECKING:
    from sqlmodel import Session

    from server.attendance.models import AttendanceSheet
    from server.config import ServerSettings
    from server.keyring import Keyring

server_app = typer.Typer(no_args_is_help=True, help="Run and migrate the server.")
admin_app = typer.Typer(no_args_is_help=True, help="Administer organisations, members, cards, kiosks.")
org_app = typer.Typer(no_args_is_help=True, help="Organisations (党组织).")
member_app = typer.Typer(no_args_is_help=True, help="Members (党员).")
card_app = typer.Typer(no_args_is_help=True, help="Card bindings (易通卡).")
venue_app = typer.Typer(no_args_is_help=True, help="Venues.")
event_app = typer.Typer(no_args_is_help=True, help="Events (会议/活动) and their sign-in sheets.")
kiosk_app = typer.Typer(no_args_is_help=True, help="Kiosks and enrollment codes.")
token_app = typer.Typer(no_args_is_help=True, help="API bearer tokens.")
admin_app.add_typer(org_app, name="org")
admin_app.add_typer(member_app, name="member")
admin_app.add_typer(card_app, name="card")
admin_app.add_typer(venue_app, name="venue")
admin_app.add_typer(event_app, name="event")
admin_app.add_typer(kiosk_app, name="kiosk")
admin_app.add_typer(token_app, name="token")

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a line of text.")]
DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL; default ECARD_DATABASE_URL, else SQLite in ECARD_DATA_DIR."),
]


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


EXIT_REFUSED = 1
EXIT_USAGE = 2


@dataclass(frozen=True)
class AdminContext:
    session: Session
    keyring: Keyring
    settings: ServerSettings
    now: datetime


@dataclass(frozen=True)
class Outcome:
    """What a verb reports: the JSON object, and the line (or table) for people."""

    data: dict[str, Any]
    text: str


# --- server -----------------------------------------------------------------------------------


@server_app.command("migrate")
def server_migrate(db: DbOption = None, json_output: JsonOption = False) -> None:
    """Apply the database migrations (safe to repeat)."""
    from server.db import describe_url, make_engine
    from server.migrate import migrate

    settings = _load_settings(db, json_output)
    with _refusals_reported(json_output):
        engine = make_engine(settings.database_url)
        try:
            revision = migrate(engine)
        finally:
            engine.dispose()
    where = describe_url(settings.database_url)
    _emit(
        Outcome({"revision": revision, "database": where}, f"database at revision {revision}: {where}"),
        json_output,
    )


@server_app.command("run")
def server_run(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port; 0 picks a free one (see the ready line).")] = 8000,
    db: DbOption = None,
    log_level: Annotated[LogLevel, typer.Option(help="Logging threshold.")] = LogLevel.INFO,
) -> None:
    """Migrate the database, then serve the API until interrupted."""
    import logging

    from server.serve import serve

    logging.basicConfig(
        level=log_level.value.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if log_level != LogLevel.DEBUG:
        logging.getLogger("alembic").setLevel(logging.WARNING)  # per-step chatter; we log the outcome
    settings = _load_settings(db, json_output=False)
    with _refusals_reported(json_output=False):
        serve(settings, host=host, port=port, log_level=log_level.value)


# --- admin ------------------------------------------------------------------------------------


@org_app.command("add")
def org_add(
    name: str,
    parent: Annotated[int | None, typer.Option("--parent", help="Parent organisation id.")] = None,
    kind: Annotated[OrgKind, typer.Option("--kind", help="Kind of organisation.")] = OrgKind.BRANCH,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Add an organisation, optionally under a parent."""

    def action(ctx: AdminContext) -> Outcome:
        from server.orgs.service import add_organisation

        org = add_organisation(ctx.session, name=name, kind=kind, parent_id=parent, now=ctx.now)
        data = {"id": org.id, "name": org.name, "kind": org.kind.value, "parent_id": org.parent_id}
        return Outcome(data, f"organisation {org.id} added: {org.name} ({org.kind.value})")

    _run_admin(action, db=db, json_output=json_output)


@member_app.command("add")
def member_add(
    name: str,
    org: Annotated[int, typer.Option("--org", help="Organisation id.")],
    category: Annotated[MemberCategory, typer.Option("--category")] = MemberCategory.FULL,
    joined: Annotated[
        str | None, typer.Option("--joined", help="When they joined the organisation (ISO 8601).")
    ] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Add a member to an organisation."""

    def action(ctx: AdminContext) -> Outcome:
        from server.orgs.service import add_member

        joined_at = _parse_time(joined, "--joined", ctx.settings.tz) if joined else None
        member = add_member(
            ctx.session, name=name, org_id=org, category=category, joined_org_at=joined_at, now=ctx.now
        )
        data = {
            "id": member.id,
            "name": member.name,
            "org_id": member.org_id,
            "category": member.category.value,
        }
        return Outcome(data, f"member {member.id} added: {member.name} ({member.category.value})")

    _run_admin(action, db=db, json_output=json_output)


@card_app.command("bind")
def card_bind(
    member_id: int,
    card_no: Annotated[str | None, typer.Option("--card-no", help="19-digit card number.")] = None,
    uid: Annotated[str | None, typer.Option("--uid", help="Card UID in hex.")] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Bind a card (by number, UID or both) to a member. Only masked forms are ever shown."""

    def action(ctx: AdminContext) -> Outcome:
        from server.cards.service import bind_card

        binding = bind_card(
            ctx.session, keyring=ctx.keyring, member_id=member_id, card_no=card_no, uid=uid, now=ctx.now
        )
        data = {
            "id": binding.id,
            "member_id": binding.member_id,
            "card_no_masked": binding.card_no_masked,
            "uid_masked": binding.uid_masked,
            "status": binding.status.value,
        }
        shown = " / ".join(m for m in (binding.card_no_masked, binding.uid_masked) if m)
        return Outcome(data, f"card {shown} bound to member {binding.member_id} (binding {binding.id})")

    _run_admin(action, db=db, json_output=json_output)


@venue_app.command("add")
def venue_add(
    name: str,
    org: Annotated[int, typer.Option("--org", help="Owning organisation id.")],
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Add a venue."""

    def action(ctx: AdminContext) -> Outcome:
        from server.venues.service import add_venue

        venue = add_venue(ctx.session, name=name, org_id=org, now=ctx.now)
        return Outcome(
            {"id": venue.id, "name": venue.name, "org_id": venue.org_id},
            f"venue {venue.id} added: {venue.name}",
        )

    _run_admin(action, db=db, json_output=json_output)


@event_app.command("add")
def event_add(
    title: str,
    org: Annotated[int, typer.Option("--org", help="Organising organisation id.")],
    venue: Annotated[int, typer.Option("--venue", help="Venue id.")],
    start: Annotated[str, typer.Option("--start", help="ISO 8601; without an offset, ECARD_TIMEZONE.")],
    end: Annotated[str, typer.Option("--end", help="ISO 8601; without an offset, ECARD_TIMEZONE.")],
    kind: Annotated[EventKind, typer.Option("--kind")] = EventKind.OTHER,
    checkin_opens: Annotated[
        str | None, typer.Option("--checkin-opens", help="Default: 30 minutes before the start.")
    ] = None,
    checkin_closes: Annotated[str | None, typer.Option("--checkin-closes", help="Default: the end.")] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Schedule an event at a venue; kiosks there check members in during its window."""

    def action(ctx: AdminContext) -> Outcome:
        from server.events.service import add_event

        tz = ctx.settings.tz
        event = add_event(
            ctx.session,
            title=title,
            org_id=org,
            venue_id=venue,
            kind=kind,
            start_at=_parse_time(start, "--start", tz),
            end_at=_parse_time(end, "--end", tz),
            checkin_opens_at=_parse_time(checkin_opens, "--checkin-opens", tz) if checkin_opens else None,
            checkin_closes_at=_parse_time(checkin_closes, "--checkin-closes", tz) if checkin_closes else None,
            now=ctx.now,
        )
        data = {
            "id": event.id,
            "title": event.title,
            "org_id": event.org_id,
            "venue_id": event.venue_id,
            "kind": event.kind.value,
            "start_at": _iso(event.start_at, tz),
            "end_at": _iso(event.end_at, tz),
            "checkin_opens_at": _iso(event.checkin_opens_at, tz),
            "checkin_closes_at": _iso(event.checkin_closes_at, tz),
        }
        window = f"{_iso(event.checkin_opens_at, tz)} – {_iso(event.checkin_closes_at, tz)}"
        return Outcome(data, f"event {event.id} added: {event.title} (check-in {window})")

    _run_admin(action, db=db, json_output=json_output)


@event_app.command("attendance")
def event_attendance(event_id: int, json_output: JsonOption = False, db: DbOption = None) -> None:
    """Print an event's sign-in sheet (签到表)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.attendance.service import build_attendance_sheet

        sheet = build_attendance_sheet(ctx.session, event_id=event_id, viewer=None, tz=ctx.settings.tz)
        return Outcome(sheet.model_dump(mode="json"), _sheet_table(sheet))

    _run_admin(action, db=db, json_output=json_output)


@kiosk_app.command("add")
def kiosk_add(
    name: str,
    venue: Annotated[int, typer.Option("--venue", help="Venue id.")],
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Register a kiosk and print its one-time enrollment code."""

    def action(ctx: AdminContext) -> Outcome:
        from server.kiosks.service import add_kiosk

        issued = add_kiosk(
            ctx.session,
            keyring=ctx.keyring,
            name=name,
            venue_id=venue,
            now=ctx.now,
            code_ttl=ctx.settings.enrollment_code_ttl,
        )
        return _issued_code_outcome(
            issued.kiosk.id, issued.kiosk.name, venue, issued.code, issued.expires_at, ctx
        )

    _run_admin(action, db=db, json_output=json_output)


@kiosk_app.command("code")
def kiosk_code(kiosk_id: str, json_output: JsonOption = False, db: DbOption = None) -> None:
    """Issue a new enrollment code for a kiosk (e.g. replaced hardware); older codes stop working."""

    def action(ctx: AdminContext) -> Outcome:
        from server.kiosks.service import issue_enrollment_code

        issued = issue_enrollment_code(
            ctx.session,
            keyring=ctx.keyring,
            kiosk_id=kiosk_id,
            now=ctx.now,
            code_ttl=ctx.settings.enrollment_code_ttl,
        )
        kiosk = issued.kiosk
        return _issued_code_outcome(kiosk.id, kiosk.name, kiosk.venue_id, issued.code, issued.expires_at, ctx)

    _run_admin(action, db=db, json_output=json_output)


@kiosk_app.command("revoke")
def kiosk_revoke(kiosk_id: str, json_output: JsonOption = False, db: DbOption = None) -> None:
    """Stop accepting taps from a kiosk."""

    def action(ctx: AdminContext) -> Outcome:
        from server.kiosks.service import revoke_kiosk

        kiosk = revoke_kiosk(ctx.session, kiosk_id=kiosk_id, now=ctx.now)
        return Outcome({"id": kiosk.id, "status": kiosk.status.value}, f"kiosk {kiosk.id} revoked")

    _run_admin(action, db=db, json_output=json_output)


@kiosk_app.command("list")
def kiosk_list(json_output: JsonOption = False, db: DbOption = None) -> None:
    """List kiosks with their status, last sequence number and last contact."""

    def action(ctx: AdminContext) -> Outcome:
        from server.kiosks.service import list_kiosks

        tz = ctx.settings.tz
        rows = [
            {
                "id": k.id,
                "name": k.name,
                "venue_id": k.venue_id,
                "status": k.status.value,
                "kid": k.kid,
                "last_seq": k.last_seq,
                "last_seen_at": _iso(k.last_seen_at, tz) if k.last_seen_at else None,
            }
            for k in list_kiosks(ctx.session)
        ]
        lines = [
            f"{r['id']}  {r['status']:<8} venue {r['venue_id']}  last seq {r['last_seq'] or '-'}  "
            f"last seen {r['last_seen_at'] or '-'}  {r['name']}"
            for r in rows
        ]
        return Outcome({"kiosks": rows}, "\n".join(lines) or "no kiosks")

    _run_admin(action, db=db, json_output=json_output)


@token_app.command("create")
def token_create(
    role: Annotated[TokenRole, typer.Option("--role")] = TokenRole.ADMIN,
    org: Annotated[
        int | None, typer.Option("--org", help="Limit the token to this organisation's subtree.")
    ] = None,
    label: Annotated[str, typer.Option("--label", help="A note for whoever finds this token later.")] = "",
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Create an API bearer token; it is printed once and stored only as a keyed digest."""

    def action(ctx: AdminContext) -> Outcome:
        from server.auth.service import create_token

        created = create_token(
            ctx.session, keyring=ctx.keyring, role=role, org_id=org, label=label, now=ctx.now
        )
        record = created.record
        data = {"id": record.id, "token": created.token, "role": record.role.value, "org_id": record.org_id}
        return Outcome(data, created.token)

    _run_admin(action, db=db, json_output=json_output)


# --- plumbing ---------------------------------------------------------------------------------


def _run_admin(action: Callable[[AdminContext], Outcome], *, db: str | None, json_output: bool) -> None:
    with _refusals_reported(json_output), _admin_context(db, json_output) as ctx:
        outcome = action(ctx)
    # Printed only after the commit: a script never sees an id that was rolled back.
    _emit(outcome, json_output)


@contextmanager
def _admin_context(db: str | None, json_output: bool) -> Iterator[AdminContext]:
    from server.clock import utc_now
    from server.config import load_secret_key
    from server.db import make_engine, unit_of_work
    from server.keyring import Keyring
    from server.migrate import migrate

    settings = _load_settings(db, json_output)
    keyring = Keyring(load_secret_key(settings))
    engine = make_engine(settings.database_url)  # errors here are reported by _refusals_reported
    try:
        migrate(engine)
        with unit_of_work(engine) as session:
            yield AdminContext(session=session, keyring=keyring, settings=settings, now=utc_now())
    finally:
        engine.dispose()


@contextmanager
def _refusals_reported(json_output: bool) -> Iterator[None]:
    """Turn domain refusals, configuration and database failures into messages and exit codes."""
    from sqlalchemy.exc import SQLAlchemyError

    from server.config import ConfigError
    from server.errors import DomainError

    try:
        yield
    except DomainError as exc:
        _fail(exc.code, exc.message, json_output, EXIT_REFUSED)
    except ConfigError as exc:
        _fail_usage(str(exc), json_output)
    except SQLAlchemyError as exc:
        # The driver's message names host and database but not the password.
        _fail(
            "database_error",
            f"数据库错误: {exc.__class__.__name__}: {exc.args[0] if exc.args else exc}",
            json_output,
            EXIT_REFUSED,
        )


def _load_settings(db: str | None, json_output: bool) -> ServerSettings:
    from pydantic import ValidationError

    from server.config import ServerSettings

    try:
        return ServerSettings(database_url=db) if db else ServerSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        _fail_usage(f"invalid settings (ECARD_*): {problems}", json_output)


def _parse_time(text: str, option: str, tz: tzinfo) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not an ISO 8601 time: {text!r}", param_hint=option) from exc
    return value.replace(tzinfo=tz) if value.tzinfo is None else value


def _iso(value: datetime, tz: tzinfo) -> str:
    return value.astimezone(tz).isoformat(timespec="seconds")


def _issued_code_outcome(
    kiosk_id: str, name: str, venue_id: int, code: str, expires_at: datetime, ctx: AdminContext
) -> Outcome:
    expires = _iso(expires_at, ctx.settings.tz)
    data = {
        "id": kiosk_id,
        "name": name,
        "venue_id": venue_id,
        "enrollment_code": code,
        "expires_at": expires,
    }
    return Outcome(data, f"kiosk {kiosk_id} ({name}): enrollment code {code} (single use, expires {expires})")


def _sheet_table(sheet: AttendanceSheet) -> str:
    event, counts = sheet.event, sheet.counts
    lines = [
        f"签到表  {event.title}  (活动 {event.id}, {event.organisation.name}, {event.venue.name})",
        f"时间 {event.start_at:%Y-%m-%d %H:%M} – {event.end_at:%H:%M}   "
        f"应到 {counts.expected}  实到 {counts.present}  缺席 {counts.absent}"
        f"  (正式 {counts.present_full}, 预备 {counts.present_probationary}; 列席 {counts.guests})",
        "",
        _row("状态", "姓名", "类别", "首次刷卡", "最后刷卡", "次数"),
    ]
    category_names = {MemberCategory.FULL: "正式", MemberCategory.PROBATIONARY: "预备"}
    for p in sheet.present:
        status = "已到" if p.expected else "列席"
        lines.append(
            _row(
                status,
                p.name,
                category_names[p.category],
                f"{p.first_tap_at:%H:%M:%S}",
                f"{p.last_tap_at:%H:%M:%S}",
                str(p.tap_count),
            )
        )
    lines.extend(_row("缺席", m.name, category_names[m.category], "", "", "") for m in sheet.absent)
    return "\n".join(line.rstrip() for line in lines)


_COLUMN_WIDTHS = (6, 12, 6, 10, 10, 4)


def _row(*cells: str) -> str:
    return "".join(_pad(cell, width) for cell, width in zip(cells, _COLUMN_WIDTHS, strict=True))


def _pad(text: str, width: int) -> str:
    # Chinese characters take two terminal columns; str.ljust counts them as one.
    import unicodedata

    shown = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(1, width - shown)


def _emit(outcome: Outcome, json_output: bool) -> None:
    if json_output:
        typer.echo(json.dumps(outcome.data, ensure_ascii=False))
    else:
        typer.echo(outcome.text)


def _fail(code: str, message: str, json_output: bool, exit_code: int) -> NoReturn:
    if json_output:
        typer.echo(json.dumps({"error": code, "detail": message}, ensure_ascii=False))
    else:
        typer.echo(f"错误 ({code}): {message}", err=True)
    raise typer.Exit(exit_code)


def _fail_usage(message: str, json_output: bool) -> NoReturn:
    _fail("invalid_configuration", message, json_output, EXIT_USAGE)
