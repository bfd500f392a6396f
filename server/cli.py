"""``ecard server`` (run, migrate) and ``ecard admin`` (organisations, members, cards, venues,
events, kiosks, tokens, web users, leave, attendance, taps, ledgers, reminders, transfers,
dues, development, booth).

Scripts drive the admin verbs: each prints one JSON object with ``--json`` (else one short line),
exits 0 on success, 1 on a refusal (``{"error": code, "detail": message}`` on stdout with
``--json``, a line on stderr otherwise) and 2 on bad usage or configuration. The database is
``--db``, else ``ECARD_DATABASE_URL``, else SQLite under ``ECARD_DATA_DIR``; every verb migrates it
first. The verbs live next to their domain (``server/<domain>/cli.py``) and share
``server.cli_support``; this module only assembles them. Only typer and the vocabulary are
imported: the server stack loads when a command runs.
"""

from __future__ import annotations

import typer

from server.attendance.cli import attendance_app, card_bind, event_add, taps_app
from server.auth.cli import token_app
from server.booth.cli import booth_app
from server.cards.cli import card_app
from server.cli_support import CheckedArgsGroup
from server.development.cli import development_app
from server.dues.cli import dues_app
from server.events.cli import event_app
from server.inspection.cli import audit_app
from server.kiosks.cli import kiosk_app
from server.leave.cli import leave_app
from server.ledgers.cli import event_sheet, ledger_app, member_history
from server.notify.cli import notify_app
from server.orgs.cli import member_app, org_app
from server.reminders.cli import reminders
from server.roster.cli import roster_import
from server.server_cli import jobs_app, server_app
from server.supervision.cli import supervision_app
from server.synth.cli import synth_city
from server.transfers.cli import transfer_app
from server.users.cli import user_app
from server.venues.cli import venue_app

__all__ = ["admin_app", "server_app"]

admin_app = typer.Typer(
    cls=CheckedArgsGroup, no_args_is_help=True, help="Administer organisations, members, cards, kiosks."
)
admin_app.command("import")(roster_import)
admin_app.command("synth")(synth_city)
admin_app.command("reminders")(reminders)
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
admin_app.add_typer(audit_app, name="audit")
admin_app.add_typer(dues_app, name="dues")
admin_app.add_typer(development_app, name="development")
admin_app.add_typer(notify_app, name="notify")
admin_app.add_typer(supervision_app, name="supervision")
admin_app.add_typer(jobs_app, name="jobs")
admin_app.add_typer(booth_app, name="booth")

# Aliases: the same verbs as ``ledger event`` and ``ledger member``; operators' scripts use both
# names. They are registered here, not in the lower domains, so orgs and events never import ledgers.
event_app.command(
    "attendance", help="Print an event's sign-in sheet (签到表), or export it with --format/--out."
)(event_sheet)
member_app.command("history")(member_history)
# Scheduling an event and binding a card decide earlier taps again (server.attendance.derive):
# those verbs live with attendance and are registered here, so events and cards never import it.
event_app.command("add")(event_add)
card_app.command("bind")(card_bind)
