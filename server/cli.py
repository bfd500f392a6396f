"""``ecard server`` (run, migrate) and ``ecard admin`` (organisations, members, cards, venues,
events, kiosks, tokens, web users).

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
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from server.synth.scales import ScaleName
from server.vocabulary import (
    CommitteeRole,
    EventKind,
    ExemptionReason,
    MemberCategory,
    MemberStatus,
    OrgKind,
    TokenRole,
    UserRole,
)

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
user_app = typer.Typer(no_args_is_help=True, help="Web app users (secretaries, organisers, admins).")
transfer_app = typer.Typer(no_args_is_help=True, help="组织关系转入 requests and their expiry sweep.")
leave_app = typer.Typer(no_args_is_help=True, help="Leave requests (请假).")
attendance_app = typer.Typer(no_args_is_help=True, help="Manual attendance entries (补录).")
taps_app = typer.Typer(no_args_is_help=True, help="Unmatched taps: list, assign to an event, purge.")
ledger_app = typer.Typer(no_args_is_help=True, help="Ledgers (电子台账): print or export.")
admin_app.add_typer(leave_app, name="leave")
admin_app.add_typer(attendance_app, name="attendance")
admin_app.add_typer(taps_app, name="taps")
admin_app.add_typer(ledger_app, name="ledger")
admin_app.add_typer(org_app, name="org")
admin_app.add_typer(member_app, name="member")
admin_app.add_typer(card_app, name="card")
admin_app.add_typer(venue_app, name="venue")
admin_app.add_typer(event_app, name="event")
admin_app.add_typer(kiosk_app, name="kiosk")
admin_app.add_typer(token_app, name="token")
admin_app.add_typer(user_app, name="user")
admin_app.add_typer(transfer_app, name="transfer")

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
    issuer_mac: Annotated[
        bool,
        typer.Option(
            "--issuer-mac",
            help="The card answers the issuer's challenge: a kiosk that asks and gets no valid answer "
            "has a clone (needs --card-no).",
        ),
    ] = False,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Bind a card (by number, UID or both) to a member. Only masked forms are ever shown."""

    def action(ctx: AdminContext) -> Outcome:
        from server.cards.service import bind_card

        binding = bind_card(
            ctx.session,
            keyring=ctx.keyring,
            member_id=member_id,
            card_no=card_no,
            uid=uid,
            now=ctx.now,
            issuer_mac=issuer_mac,
        )
        data = {
            "id": binding.id,
            "member_id": binding.member_id,
            "card_no_masked": binding.card_no_masked,
            "uid_masked": binding.uid_masked,
            "status": binding.status.value,
            "issuer_mac": binding.issuer_mac_since is not None,
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
    kinds: Annotated[
        str | None,
        typer.Option("--kinds", help="Comma-separated kinds it counts for (the first is the main kind)."),
    ] = None,
    orgs: Annotated[
        str | None, typer.Option("--orgs", help="Comma-separated partner organisations of a joint event.")
    ] = None,
    chair: Annotated[int | None, typer.Option("--chair", help="Chair (主持人), a member id.")] = None,
    recorder: Annotated[int | None, typer.Option("--recorder", help="Recorder (记录人), member id.")] = None,
    topic: Annotated[str, typer.Option("--topic", help="Topic or agenda (议题).")] = "",
    late_after: Annotated[
        str | None, typer.Option("--late-after", help="First taps after this are late (default: the start).")
    ] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Schedule an event at a venue; kiosks there check members in during its window."""

    def action(ctx: AdminContext) -> Outcome:
        from server.events.service import add_event

        tz = ctx.settings.tz
        all_kinds = _comma_list(kinds, EventKind, "--kinds") or [kind]
        partners = [o for o in _comma_list(orgs, int, "--orgs") if o != org]
        event = add_event(
            ctx.session,
            title=title,
            org_id=org,
            venue_id=venue,
            kind=all_kinds[0],
            also_counts_as=all_kinds[1:],
            joint_org_ids=partners,
            chair_member_id=chair,
            recorder_member_id=recorder,
            topic=topic,
            late_after=_parse_time(late_after, "--late-after", tz) if late_after else None,
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
            "kinds": [k.value for k in dict.fromkeys(all_kinds)],
            "org_ids": [org, *partners],
            "chair_member_id": event.chair_member_id,
            "recorder_member_id": event.recorder_member_id,
            "topic": event.topic,
            "late_after": _iso(event.late_after, tz),
            "start_at": _iso(event.start_at, tz),
            "end_at": _iso(event.end_at, tz),
            "checkin_opens_at": _iso(event.checkin_opens_at, tz),
            "checkin_closes_at": _iso(event.checkin_closes_at, tz),
        }
        window = f"{_iso(event.checkin_opens_at, tz)} – {_iso(event.checkin_closes_at, tz)}"
        return Outcome(data, f"event {event.id} added: {event.title} (check-in {window})")

    _run_admin(action, db=db, json_output=json_output)


@event_app.command("attendance")
def event_attendance(
    event_id: int,
    fmt: FormatOption = None,
    out: OutOption = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Print an event's sign-in sheet (签到表), or export it with --format/--out."""

    def action(ctx: AdminContext) -> Outcome:
        from server.attendance.service import build_attendance_sheet

        sheet = build_attendance_sheet(ctx.session, event_id=event_id, viewer=None, tz=ctx.settings.tz)
        return _ledger_outcome(sheet, fmt, out, _sheet_table(sheet))

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
        from server.audit.service import CLI_ACTOR
        from server.kiosks.service import add_kiosk

        issued = add_kiosk(
            ctx.session,
            keyring=ctx.keyring,
            name=name,
            venue_id=venue,
            now=ctx.now,
            code_ttl=ctx.settings.enrollment_code_ttl,
            actor=CLI_ACTOR,
        )
        return _issued_code_outcome(
            issued.kiosk.id, issued.kiosk.name, venue, issued.code, issued.expires_at, ctx
        )

    _run_admin(action, db=db, json_output=json_output)


@kiosk_app.command("code")
def kiosk_code(kiosk_id: str, json_output: JsonOption = False, db: DbOption = None) -> None:
    """Issue a new enrollment code for a kiosk (e.g. replaced hardware); older codes stop working."""

    def action(ctx: AdminContext) -> Outcome:
        from server.audit.service import CLI_ACTOR
        from server.kiosks.service import issue_enrollment_code

        issued = issue_enrollment_code(
            ctx.session,
            keyring=ctx.keyring,
            kiosk_id=kiosk_id,
            now=ctx.now,
            code_ttl=ctx.settings.enrollment_code_ttl,
            actor=CLI_ACTOR,
        )
        kiosk = issued.kiosk
        return _issued_code_outcome(kiosk.id, kiosk.name, kiosk.venue_id, issued.code, issued.expires_at, ctx)

    _run_admin(action, db=db, json_output=json_output)


@kiosk_app.command("revoke")
def kiosk_revoke(kiosk_id: str, json_output: JsonOption = False, db: DbOption = None) -> None:
    """Stop accepting taps from a kiosk."""

    def action(ctx: AdminContext) -> Outcome:
        from server.audit.service import CLI_ACTOR
        from server.kiosks.service import revoke_kiosk

        kiosk = revoke_kiosk(ctx.session, kiosk_id=kiosk_id, now=ctx.now, actor=CLI_ACTOR, org_ids=None)
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


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="Sign-in name: lower-case letters, digits, '.', '_', '-'.")],
    role: Annotated[UserRole, typer.Option("--role", help="secretary | organiser | admin.")],
    org: Annotated[
        int | None, typer.Option("--org", help="The user sees this organisation's subtree (admins may omit).")
    ] = None,
    display_name: Annotated[str, typer.Option("--display-name", help="Shown in the web app.")] = "",
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Create a web user. The password is read from stdin (first line), or asked for twice on a terminal."""
    password = _read_new_password(json_output)

    def action(ctx: AdminContext) -> Outcome:
        from server.audit.service import CLI_ACTOR
        from server.users.service import add_user

        user = add_user(
            ctx.session,
            username=name,
            display_name=display_name or name,
            password=password,
            role=role,
            org_id=org,
            now=ctx.now,
            actor=CLI_ACTOR,
        )
        data = {"id": user.id, "username": user.username, "role": user.role.value, "org_id": user.org_id}
        scope = f"organisation {user.org_id}" if user.org_id is not None else "all organisations"
        return Outcome(data, f"user {user.id} added: {user.username} ({user.role.value}, {scope})")

    _run_admin(action, db=db, json_output=json_output)


def _read_new_password(json_output: bool) -> str:
    # Never an option or argument: those end up in shell history and `ps`.
    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            _fail_usage("the passwords do not match", json_output)
        return password
    line = sys.stdin.readline()
    password = line[:-1] if line.endswith("\n") else line
    if not password:
        _fail_usage("no password on stdin (pipe it in, e.g. from a password manager)", json_output)
    return password.removesuffix("\r")


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


@admin_app.command("import")
def roster_import(
    path: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The 花名册 workbook (.xlsx).")
    ],
    org: Annotated[
        int | None, typer.Option("--org", help="Only accept branches inside this organisation's subtree.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check and report; write nothing.")] = False,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Import a 花名册 (members and 易通卡): every row or none; the same file again changes nothing.

    Columns are found by header (姓名, 性别, 党员类别, 所在支部, 易通卡号, optional UID). Any bad row
    refuses the whole file and lists every problem by row (exit 1); large files show a progress bar.
    """
    from server.audit.service import CLI_ACTOR
    from server.errors import RosterInvalid
    from server.roster.console import problems_text, progress_bars, report_text
    from server.roster.service import import_roster

    data = path.read_bytes()
    with _refusals_reported(json_output):
        try:
            with _admin_context(db, json_output) as ctx:
                report = import_roster(
                    ctx.session,
                    keyring=ctx.keyring,
                    data=data,
                    scope_org_id=org,
                    actor=CLI_ACTOR,
                    now=ctx.now,
                    dry_run=dry_run,
                    track=progress_bars(),
                )
        except RosterInvalid as exc:
            if json_output:
                body = {"error": exc.code, "detail": exc.message, **exc.extra()}
                typer.echo(json.dumps(body, ensure_ascii=False))
            else:
                typer.echo(problems_text(exc), err=True)
            raise typer.Exit(EXIT_REFUSED) from None
    _emit(Outcome(report.model_dump(mode="json"), report_text(report)), json_output)


@admin_app.command("synth")
def synth_city(
    scale: Annotated[
        ScaleName, typer.Option("--scale", help="city: 15,000 organisations, 5 million taps; tiny: seconds.")
    ] = ScaleName.TINY,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, scale and year: the same data.")] = 1,
    year: Annotated[
        int | None, typer.Option("--year", help="The calendar year of the meetings; default last year.")
    ] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Fill an EMPTY database with a synthetic city-year: organisations, members, cards, meetings, taps.

    For benchmarks and demos only; refuses a database that already has organisations (exit 1).
    """
    from server.clock import utc_now
    from server.config import load_secret_key
    from server.db import describe_url, make_engine
    from server.keyring import Keyring
    from server.migrate import migrate
    from server.roster.console import ProgressBars
    from server.synth.scales import SCALES
    from server.synth.service import build_city

    settings = _load_settings(db, json_output)
    now = utc_now()
    with _refusals_reported(json_output):
        keyring = Keyring(load_secret_key(settings))
        engine = make_engine(settings.database_url)
        try:
            migrate(engine)
            report = build_city(
                engine,
                keyring=keyring,
                scale=SCALES[scale],
                seed=seed,
                year=year or now.astimezone(settings.tz).year - 1,
                now=now,
                track=ProgressBars(min_items=2, unit="步"),
            )
        finally:
            engine.dispose()
    where = describe_url(settings.database_url)
    rows = report.rows
    text = (
        f"synthetic {report.scale} city, seed {report.seed}, year {report.year}, in {report.seconds:.0f} s: "
        f"{rows.get('organisation', 0)} organisations, {rows.get('member', 0)} members, "
        f"{rows.get('event', 0)} events, {rows.get('tap', 0)} taps → {where}"
    )
    _emit(Outcome(report.as_dict() | {"database": where}, text), json_output)


# --- ledgers: members' history, committees, cards, leave, attendance, taps, ledgers, reminders --


class ExportChoice(StrEnum):
    JSON = "json"
    CSV = "csv"
    XLSX = "xlsx"
    PDF = "pdf"


FormatOption = Annotated[
    ExportChoice | None,
    typer.Option(
        "--format", help="Write the ledger as json, csv, xlsx or pdf (with --out; json also to stdout)."
    ),
]
OutOption = Annotated[Path | None, typer.Option("--out", help="File to write the export to.")]
AtOption = Annotated[str | None, typer.Option("--at", help="When it takes effect (ISO 8601; default: now).")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (kept in the audit log).")]


def _at(ctx: AdminContext, at: str | None) -> datetime:
    return _parse_time(at, "--at", ctx.settings.tz) if at else ctx.now


def _cli_actor() -> Any:
    from server.audit.service import CLI_ACTOR

    return CLI_ACTOR


def _comma_list(text: str | None, parse: Callable[[str], Any], option: str) -> list[Any]:
    if not text:
        return []
    try:
        return [parse(item.strip()) for item in text.split(",") if item.strip()]
    except ValueError as exc:
        raise typer.BadParameter(
            f"not a comma-separated list of valid values: {text!r}", param_hint=option
        ) from exc


def _ledger_outcome(ledger: Any, fmt: ExportChoice | None, out: Path | None, text: str) -> Outcome:
    """Print the ledger (text or --json), or write it as a file with --format/--out."""
    from server.ledgers.render import ExportFormat, render_ledger

    if fmt is None and out is None:
        return Outcome(ledger.model_dump(mode="json"), text)
    chosen = ExportFormat((fmt or ExportChoice(out.suffix.lstrip(".").lower() if out else "json")).value)
    if out is None:
        if chosen != ExportFormat.JSON:
            raise typer.BadParameter("binary formats need --out FILE", param_hint="--out")
        return Outcome(ledger.model_dump(mode="json"), ledger.model_dump_json(indent=2))
    rendered = render_ledger(ledger, chosen)
    out.write_bytes(rendered.content)
    data = {"path": str(out), "format": chosen.value, "bytes": len(rendered.content)}
    return Outcome(data, f"wrote {out} ({chosen.value}, {len(rendered.content)} bytes)")


@member_app.command("category")
def member_category(
    member_id: int,
    category: Annotated[MemberCategory, typer.Option("--category", help="full (转正) or probationary.")],
    at: AtOption = None,
    reason: ReasonOption = "",
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Record 转正 (or a correction) from a date; earlier ledgers keep the old category."""

    def action(ctx: AdminContext) -> Outcome:
        from server.orgs.membership import change_member_category

        member = change_member_category(
            ctx.session,
            member_id=member_id,
            category=category,
            at=_at(ctx, at),
            actor=_cli_actor(),
            reason=reason,
        )
        return Outcome(
            {"id": member.id, "category": member.category.value},
            f"member {member.id} is now {member.category.value}",
        )

    _run_admin(action, db=db, json_output=json_output)


@member_app.command("status")
def member_status(
    member_id: int,
    status: Annotated[MemberStatus, typer.Option("--status")],
    at: AtOption = None,
    reason: ReasonOption = "",
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Change a member's status (a decision taken elsewhere; reminders never do this)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.orgs.membership import change_member_status

        member = change_member_status(
            ctx.session,
            member_id=member_id,
            status=status,
            at=_at(ctx, at),
            actor=_cli_actor(),
            reason=reason,
        )
        return Outcome(
            {"id": member.id, "status": member.status.value},
            f"member {member.id} is now {member.status.value}",
        )

    _run_admin(action, db=db, json_output=json_output)


@member_app.command("move")
def member_move(
    member_id: int,
    org: Annotated[int, typer.Option("--org", help="New organisation id.")],
    at: AtOption = None,
    reason: ReasonOption = "",
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Move a member to another organisation from a date (their history stays)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.orgs.membership import move_member

        member = move_member(
            ctx.session,
            member_id=member_id,
            to_org_id=org,
            at=_at(ctx, at),
            actor=_cli_actor(),
            reason=reason,
        )
        return Outcome(
            {"id": member.id, "org_id": member.org_id}, f"member {member.id} moved to {member.org_id}"
        )

    _run_admin(action, db=db, json_output=json_output)


@member_app.command("exempt")
def member_exempt(
    member_id: int,
    reason: Annotated[ExemptionReason, typer.Option("--reason", help="One of the approved categories.")],
    since: Annotated[str | None, typer.Option("--from", help="Start (ISO 8601; default: now).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="End (ISO 8601; default: open).")] = None,
    note: Annotated[str, typer.Option("--note", help="Approval reference, details.")] = "",
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Exempt a member from organisational life for a period (not in 应到, nor the vote basis)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.orgs.membership import add_exemption

        tz = ctx.settings.tz
        exemption = add_exemption(
            ctx.session,
            member_id=member_id,
            reason=reason,
            starts_at=_parse_time(since, "--from", tz) if since else ctx.now,
            ends_at=_parse_time(until, "--until", tz) if until else None,
            note=note,
            actor=_cli_actor(),
            now=ctx.now,
        )
        data = {
            "id": exemption.id,
            "member_id": member_id,
            "reason": exemption.reason.value,
            "starts_at": _iso(exemption.starts_at, tz),
            "ends_at": _iso(exemption.ends_at, tz) if exemption.ends_at else None,
        }
        return Outcome(data, f"exemption {exemption.id} for member {member_id} ({exemption.reason.value})")

    _run_admin(action, db=db, json_output=json_output)


@member_app.command("exempt-end")
def member_exempt_end(
    exemption_id: int, at: AtOption = None, json_output: JsonOption = False, db: DbOption = None
) -> None:
    """End an exemption (the member is back)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.orgs.membership import end_exemption

        exemption = end_exemption(ctx.session, exemption_id=exemption_id, at=_at(ctx, at), actor=_cli_actor())
        return Outcome({"id": exemption.id, "ended": True}, f"exemption {exemption.id} ended")

    _run_admin(action, db=db, json_output=json_output)


@member_app.command("history")
def member_history(
    member_id: int,
    period: Annotated[
        str | None, typer.Option("--period", help="2026, 2026-Q3 or 2026-07; default: all.")
    ] = None,
    fmt: FormatOption = None,
    out: OutOption = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """A member's record of organisational life (print, or export with --format/--out)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.ledgers.periods import parse_period
        from server.ledgers.service import build_member_history

        tz = ctx.settings.tz
        history = build_member_history(
            ctx.session,
            member_id=member_id,
            period=parse_period(period, tz) if period else None,
            viewer=None,
            now=ctx.now,
            tz=tz,
        )
        lines = [f"{history.name}（{history.category_label}，{history.organisation.name}）"]
        lines += [
            f"{row.start_at:%Y-%m-%d %H:%M}  {row.outcome_label:<4} {row.title}（{row.kinds_label}）"
            for row in history.events
        ]
        summary = history.summary
        lines.append(
            f"应参加 {summary.expected}  出席 {summary.present}  请假 {summary.on_leave}"
            f"  缺席 {summary.absent}  列席 {summary.guest}"
        )
        return _ledger_outcome(history, fmt, out, "\n".join(lines))

    _run_admin(action, db=db, json_output=json_output)


@org_app.command("committee")
def org_committee(
    org_id: int,
    member: Annotated[int, typer.Option("--member", help="Member id.")],
    role: Annotated[CommitteeRole, typer.Option("--role")] = CommitteeRole.MEMBER,
    at: AtOption = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Seat a member on the organisation's committee (支委会: who is expected, and its quorum)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.orgs.membership import appoint_committee_member

        seat = appoint_committee_member(
            ctx.session, org_id=org_id, member_id=member, role=role, at=_at(ctx, at), actor=_cli_actor()
        )
        data = {"id": seat.id, "org_id": org_id, "member_id": member, "role": role.value}
        return Outcome(data, f"committee seat {seat.id}: member {member} as {role.value}")

    _run_admin(action, db=db, json_output=json_output)


@org_app.command("committee-end")
def org_committee_end(
    seat_id: int, at: AtOption = None, json_output: JsonOption = False, db: DbOption = None
) -> None:
    """End a committee seat (换届, resignation)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.orgs.membership import end_committee_seat

        seat = end_committee_seat(ctx.session, seat_id=seat_id, at=_at(ctx, at), actor=_cli_actor())
        return Outcome({"id": seat.id, "ended": True}, f"committee seat {seat.id} ended")

    _run_admin(action, db=db, json_output=json_output)


def _binding_data(binding: Any) -> dict[str, Any]:
    return {
        "id": binding.id,
        "member_id": binding.member_id,
        "card_no_masked": binding.card_no_masked,
        "uid_masked": binding.uid_masked,
        "status": binding.status.value,
    }


@card_app.command("lost")
def card_lost(
    binding_id: int, reason: ReasonOption = "", json_output: JsonOption = False, db: DbOption = None
) -> None:
    """Report a card lost (挂失): its taps are refused with card_lost from now on."""

    def action(ctx: AdminContext) -> Outcome:
        from server.cards.lifecycle import report_card_lost

        binding = report_card_lost(
            ctx.session, binding_id=binding_id, actor=_cli_actor(), now=ctx.now, reason=reason
        )
        return Outcome(_binding_data(binding), f"binding {binding.id} reported lost")

    _run_admin(action, db=db, json_output=json_output)


@card_app.command("revoke")
def card_revoke(
    binding_id: int, reason: ReasonOption = "", json_output: JsonOption = False, db: DbOption = None
) -> None:
    """Revoke a card binding (consent withdrawn, member left)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.cards.lifecycle import revoke_card

        binding = revoke_card(
            ctx.session, binding_id=binding_id, actor=_cli_actor(), now=ctx.now, reason=reason
        )
        return Outcome(_binding_data(binding), f"binding {binding.id} revoked")

    _run_admin(action, db=db, json_output=json_output)


@card_app.command("replace")
def card_replace(
    binding_id: int,
    card_no: Annotated[str | None, typer.Option("--card-no", help="The new card's 19-digit number.")] = None,
    uid: Annotated[str | None, typer.Option("--uid", help="The new card's UID in hex.")] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Issue a new card (补换卡) in place of a binding; the old card stops working."""

    def action(ctx: AdminContext) -> Outcome:
        from server.cards.lifecycle import replace_card

        binding = replace_card(
            ctx.session,
            keyring=ctx.keyring,
            binding_id=binding_id,
            card_no=card_no,
            uid=uid,
            actor=_cli_actor(),
            now=ctx.now,
        )
        return Outcome(_binding_data(binding), f"binding {binding.id} replaces binding {binding_id}")

    _run_admin(action, db=db, json_output=json_output)


@card_app.command("list")
def card_list(member_id: int, json_output: JsonOption = False, db: DbOption = None) -> None:
    """A member's cards, newest first (masked)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.cards.lifecycle import card_history

        bindings = card_history(ctx.session, member_id=member_id)
        rows = [_binding_data(b) for b in bindings]
        lines = [
            f"{r['id']}  {r['status']:<8} "
            + " / ".join(m for m in (r["card_no_masked"], r["uid_masked"]) if m)
            for r in rows
        ]
        return Outcome({"cards": rows}, "\n".join(lines) or "no cards")

    _run_admin(action, db=db, json_output=json_output)


def _leave_data(leave: Any, tz: tzinfo) -> dict[str, Any]:
    return {
        "id": leave.id,
        "event_id": leave.event_id,
        "member_id": leave.member_id,
        "status": leave.status.value,
        "reason": leave.reason,
        "requested_at": _iso(leave.requested_at, tz),
        "decision_note": leave.decision_note,
    }


@leave_app.command("request")
def leave_request(
    event_id: int,
    member: Annotated[int, typer.Option("--member", help="Member id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why they cannot attend.")],
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Ask leave (请假) for a member, before the event starts."""

    def action(ctx: AdminContext) -> Outcome:
        from server.leave.service import request_leave

        leave = request_leave(
            ctx.session, event_id=event_id, member_id=member, reason=reason, actor=_cli_actor(), now=ctx.now
        )
        return Outcome(_leave_data(leave, ctx.settings.tz), f"leave request {leave.id} pending")

    _run_admin(action, db=db, json_output=json_output)


@leave_app.command("approve")
def leave_approve(
    leave_id: int,
    note: Annotated[str, typer.Option("--note", help="Optional remark.")] = "",
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Approve a leave request (the member leaves 应到)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.leave.service import decide_leave

        leave = decide_leave(
            ctx.session, leave_id=leave_id, approve=True, note=note, actor=_cli_actor(), now=ctx.now
        )
        return Outcome(_leave_data(leave, ctx.settings.tz), f"leave request {leave.id} approved")

    _run_admin(action, db=db, json_output=json_output)


@leave_app.command("reject")
def leave_reject(
    leave_id: int,
    note: Annotated[str, typer.Option("--note", help="Why not (required).")],
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Refuse a leave request, with a reason."""

    def action(ctx: AdminContext) -> Outcome:
        from server.leave.service import decide_leave

        leave = decide_leave(
            ctx.session, leave_id=leave_id, approve=False, note=note, actor=_cli_actor(), now=ctx.now
        )
        return Outcome(_leave_data(leave, ctx.settings.tz), f"leave request {leave.id} refused")

    _run_admin(action, db=db, json_output=json_output)


@leave_app.command("list")
def leave_list(event_id: int, json_output: JsonOption = False, db: DbOption = None) -> None:
    """Every leave request for an event."""

    def action(ctx: AdminContext) -> Outcome:
        from server.leave.service import leave_requests_for_event

        rows = [
            _leave_data(leave, ctx.settings.tz)
            for leave in leave_requests_for_event(ctx.session, event_id=event_id)
        ]
        lines = [f"{r['id']}  member {r['member_id']}  {r['status']:<9} {r['reason']}" for r in rows]
        return Outcome({"leave": rows}, "\n".join(lines) or "no leave requests")

    _run_admin(action, db=db, json_output=json_output)


@attendance_app.command("add")
def attendance_add(
    event_id: int,
    member: Annotated[int, typer.Option("--member", help="Member id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why there is no tap (required, audited).")],
    at: Annotated[str | None, typer.Option("--at", help="When they arrived (default: the start).")] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """The recorder records a presence without a tap (补录), with a reason."""

    def action(ctx: AdminContext) -> Outcome:
        from server.attendance.service import record_manual_attendance

        tz = ctx.settings.tz
        attendance = record_manual_attendance(
            ctx.session,
            event_id=event_id,
            member_id=member,
            reason=reason,
            at=_parse_time(at, "--at", tz) if at else None,
            actor=_cli_actor(),
            now=ctx.now,
        )
        data = {
            "id": attendance.id,
            "event_id": event_id,
            "member_id": member,
            "source": attendance.source.value,
            "arrived_at": _iso(attendance.first_tap_at, tz),
        }
        return Outcome(data, f"member {member} recorded present at event {event_id} (manual)")

    _run_admin(action, db=db, json_output=json_output)


@taps_app.command("unmatched")
def taps_unmatched(
    org: Annotated[int | None, typer.Option("--org", help="Venues of this organisation's subtree.")] = None,
    days: Annotated[int, typer.Option("--days", help="How far back.")] = 7,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Taps outside every check-in window (card holder masked), newest first."""

    def action(ctx: AdminContext) -> Outcome:
        from datetime import timedelta

        from server.attendance.unmatched import list_unmatched_taps

        rows = list_unmatched_taps(
            ctx.session,
            viewer=None,
            org_id=org,
            since=ctx.now - timedelta(days=days),
            until=ctx.now + timedelta(days=1),
            retention=ctx.settings.unmatched_retention,
            tz=ctx.settings.tz,
        )
        lines = [
            f"{r.tap_id}  {r.occurred_at:%Y-%m-%d %H:%M}  {r.venue.name}"
            f"  {r.member_name or '?'}  card {r.card_ref}"
            for r in rows
        ]
        return Outcome(
            {"taps": [r.model_dump(mode="json") for r in rows]}, "\n".join(lines) or "no unmatched taps"
        )

    _run_admin(action, db=db, json_output=json_output)


@taps_app.command("assign")
def taps_assign(
    tap_id: int,
    event: Annotated[int, typer.Option("--event", help="Event id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (required, audited).")],
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """File an out-of-window tap as its card holder's presence at an event."""

    def action(ctx: AdminContext) -> Outcome:
        from server.attendance.unmatched import assign_unmatched_tap

        attendance = assign_unmatched_tap(
            ctx.session,
            tap_id=tap_id,
            event_id=event,
            reason=reason,
            actor=_cli_actor(),
            viewer=None,
            now=ctx.now,
        )
        data = {"attendance_id": attendance.id, "event_id": event, "member_id": attendance.member_id}
        return Outcome(data, f"tap {tap_id} assigned to event {event}")

    _run_admin(action, db=db, json_output=json_output)


@taps_app.command("purge")
def taps_purge(
    retention_days: Annotated[
        int | None, typer.Option("--retention-days", help="Default: ECARD_UNMATCHED_RETENTION_DAYS.")
    ] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Erase card digests of unmatched taps older than the retention period (cron it daily)."""

    def action(ctx: AdminContext) -> Outcome:
        from datetime import timedelta

        from server.attendance.unmatched import purge_unmatched_taps

        days = retention_days if retention_days is not None else ctx.settings.unmatched_retention_days
        purged = purge_unmatched_taps(ctx.session, now=ctx.now, retention=timedelta(days=days))
        return Outcome(
            {"purged": purged, "retention_days": days}, f"purged {purged} taps older than {days} days"
        )

    _run_admin(action, db=db, json_output=json_output)


@ledger_app.command("event")
def ledger_event(
    event_id: int,
    fmt: FormatOption = None,
    out: OutOption = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """An event's sign-in sheet (签到表): print it, or export with --format/--out."""

    def action(ctx: AdminContext) -> Outcome:
        from server.attendance.service import build_attendance_sheet

        sheet = build_attendance_sheet(ctx.session, event_id=event_id, viewer=None, tz=ctx.settings.tz)
        return _ledger_outcome(sheet, fmt, out, _sheet_table(sheet))

    _run_admin(action, db=db, json_output=json_output)


@ledger_app.command("org")
def ledger_org(
    org_id: int,
    period: Annotated[str, typer.Option("--period", help="2026, 2026-Q3 or 2026-07.")],
    fmt: FormatOption = None,
    out: OutOption = None,
    at: Annotated[str | None, typer.Option("--at", help="As of this time (default: now).")] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """An organisation's ledger for a period: events, 三会一课 compliance, participation."""

    def action(ctx: AdminContext) -> Outcome:
        from server.ledgers.cadence import CadencePolicy
        from server.ledgers.periods import parse_period
        from server.ledgers.render import to_document
        from server.ledgers.service import build_org_ledger

        tz = ctx.settings.tz
        ledger = build_org_ledger(
            ctx.session,
            org_id=org_id,
            period=parse_period(period, tz),
            viewer=None,
            now=_at(ctx, at),
            tz=tz,
            policy=CadencePolicy(lecture=ctx.settings.lecture_cadence),
        )
        document = to_document(ledger)
        lines = [document.title, *(f"{name}：{value}" for name, value in document.facts)]
        lines += [
            f"{row.start_at:%m-%d %H:%M}  {row.title}（{row.kinds_label}）"
            f"应到{row.expected} 实到{row.present} 请假{row.on_leave} 缺席{row.absent}"
            for row in ledger.events
        ]
        lines += [
            f"{row.organisation.name} {row.period_label} {row.kind_label}：{row.status_label}"
            for row in ledger.cadence
        ]
        return _ledger_outcome(ledger, fmt, out, "\n".join(lines))

    _run_admin(action, db=db, json_output=json_output)


@ledger_app.command("member")
def ledger_member(
    member_id: int,
    period: Annotated[
        str | None, typer.Option("--period", help="2026, 2026-Q3 or 2026-07; default: all.")
    ] = None,
    fmt: FormatOption = None,
    out: OutOption = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """A member's history (same as ``member history``)."""
    member_history(member_id, period=period, fmt=fmt, out=out, json_output=json_output, db=db)


@admin_app.command("reminders")
def reminders(
    org: Annotated[int, typer.Option("--org", help="Organisation id (its whole subtree).")],
    at: Annotated[str | None, typer.Option("--at", help="As of this time (default: now).")] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Cadence gaps and the six-month rule for an organisation's subtree (nothing is changed)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.ledgers.cadence import CadencePolicy
        from server.reminders.service import build_reminders

        report = build_reminders(
            ctx.session,
            org_id=org,
            viewer=None,
            now=_at(ctx, at),
            tz=ctx.settings.tz,
            policy=CadencePolicy(lecture=ctx.settings.lecture_cadence),
        )
        lines = [f"[{r.level_label}] {r.message}" for r in report.cadence + report.inactivity]
        return Outcome(report.model_dump(mode="json"), "\n".join(lines) or "no reminders")

    _run_admin(action, db=db, json_output=json_output)


# --- plumbing ---------------------------------------------------------------------------------


@transfer_app.command("list")
def transfer_list(
    org: Annotated[int | None, typer.Option("--org", help="Only requests for this subtree.")] = None,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only requests past their deadline.")] = False,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """The open transfer-in requests, oldest first, with each step's deadline."""

    def action(ctx: AdminContext) -> Outcome:
        from server.audit.service import CLI_ACTOR
        from server.transfers.access import Reviewer
        from server.transfers.calendar import transfer_policy
        from server.transfers.queue import list_queue

        queue = list_queue(
            ctx.session,
            reviewer=Reviewer(actor=CLI_ACTOR, org_id=None),
            policy=transfer_policy(ctx.settings),
            now=ctx.now,
            org_id=org,
            overdue_only=overdue,
            limit=1000,
        )
        rows = [item.model_dump(mode="json") for item in queue.items]
        lines = [
            f"{item.id:>5}  {item.state_label:<10} {item.applicant_name}  -> {item.to_org.name}  "
            f"due {item.due_on or '-'}{'  OVERDUE' if item.overdue else ''}"
            for item in queue.items
        ]
        return Outcome(
            {"transfers": rows, "total": queue.total, "overdue": queue.overdue},
            "\n".join(lines) or "no open transfer requests",
        )

    _run_admin(action, db=db, json_output=json_output)


@transfer_app.command("expire-lapsed")
def transfer_expire_lapsed(json_output: JsonOption = False, db: DbOption = None) -> None:
    """Move pending requests whose 介绍信 has lapsed to 'expired' (run daily, e.g. from cron)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.transfers.calendar import transfer_policy
        from server.transfers.service import expire_lapsed_requests

        expired = expire_lapsed_requests(ctx.session, policy=transfer_policy(ctx.settings), now=ctx.now)
        return Outcome({"expired": expired}, f"{len(expired)} request(s) expired")

    _run_admin(action, db=db, json_output=json_output)


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
