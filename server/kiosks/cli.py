"""``ecard admin kiosk``: register kiosks, issue enrollment codes, revoke, list."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from server.cli_support import AdminContext, DbOption, JsonOption, Outcome, iso, run_admin

kiosk_app = typer.Typer(no_args_is_help=True, help="Kiosks and enrollment codes.")


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
            caller=ctx.caller,
        )
        return _issued_code_outcome(
            issued.kiosk.id, issued.kiosk.name, venue, issued.code, issued.expires_at, ctx
        )

    run_admin(action, db=db, json_output=json_output)


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
            caller=ctx.caller,
        )
        kiosk = issued.kiosk
        return _issued_code_outcome(kiosk.id, kiosk.name, kiosk.venue_id, issued.code, issued.expires_at, ctx)

    run_admin(action, db=db, json_output=json_output)


@kiosk_app.command("revoke")
def kiosk_revoke(kiosk_id: str, json_output: JsonOption = False, db: DbOption = None) -> None:
    """Stop accepting taps from a kiosk."""

    def action(ctx: AdminContext) -> Outcome:
        from server.kiosks.service import revoke_kiosk

        kiosk = revoke_kiosk(ctx.session, kiosk_id=kiosk_id, now=ctx.now, caller=ctx.caller)
        return Outcome({"id": kiosk.id, "status": kiosk.status.value}, f"kiosk {kiosk.id} revoked")

    run_admin(action, db=db, json_output=json_output)


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
                "last_seen_at": iso(k.last_seen_at, tz) if k.last_seen_at else None,
            }
            for k in list_kiosks(ctx.session)
        ]
        lines = [
            f"{r['id']}  {r['status']:<8} venue {r['venue_id']}  last seq {r['last_seq'] or '-'}  "
            f"last seen {r['last_seen_at'] or '-'}  {r['name']}"
            for r in rows
        ]
        return Outcome({"kiosks": rows}, "\n".join(lines) or "no kiosks")

    run_admin(action, db=db, json_output=json_output)


def _issued_code_outcome(
    kiosk_id: str, name: str, venue_id: int, code: str, expires_at: datetime, ctx: AdminContext
) -> Outcome:
    expires = iso(expires_at, ctx.settings.tz)
    data = {
        "id": kiosk_id,
        "name": name,
        "venue_id": venue_id,
        "enrollment_code": code,
        "expires_at": expires,
    }
    return Outcome(data, f"kiosk {kiosk_id} ({name}): enrollment code {code} (single use, expires {expires})")
