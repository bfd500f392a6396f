"""``ecard admin leave``: leave requests (请假)."""

from __future__ import annotations

from datetime import tzinfo
from typing import Annotated, Any

import typer

from server.cli_support import AdminContext, DbOption, JsonOption, Outcome, iso, run_admin

leave_app = typer.Typer(no_args_is_help=True, help="Leave requests (请假).")


def _leave_data(leave: Any, tz: tzinfo) -> dict[str, Any]:
    return {
        "id": leave.id,
        "event_id": leave.event_id,
        "member_id": leave.member_id,
        "status": leave.status.value,
        "reason": leave.reason,
        "requested_at": iso(leave.requested_at, tz),
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
            ctx.session, event_id=event_id, member_id=member, reason=reason, caller=ctx.caller, now=ctx.now
        )
        return Outcome(_leave_data(leave, ctx.settings.tz), f"leave request {leave.id} pending")

    run_admin(action, db=db, json_output=json_output)


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
            ctx.session, leave_id=leave_id, approve=True, note=note, caller=ctx.caller, now=ctx.now
        )
        return Outcome(_leave_data(leave, ctx.settings.tz), f"leave request {leave.id} approved")

    run_admin(action, db=db, json_output=json_output)


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
            ctx.session, leave_id=leave_id, approve=False, note=note, caller=ctx.caller, now=ctx.now
        )
        return Outcome(_leave_data(leave, ctx.settings.tz), f"leave request {leave.id} refused")

    run_admin(action, db=db, json_output=json_output)


@leave_app.command("list")
def leave_list(event_id: int, json_output: JsonOption = False, db: DbOption = None) -> None:
    """Every leave request for an event."""

    def action(ctx: AdminContext) -> Outcome:
        from server.leave.service import leave_requests_for_event

        rows = [
            _leave_data(leave, ctx.settings.tz)
            for leave in leave_requests_for_event(ctx.session, event_id=event_id, caller=ctx.caller)
        ]
        lines = [f"{r['id']}  member {r['member_id']}  {r['status']:<9} {r['reason']}" for r in rows]
        return Outcome({"leave": rows}, "\n".join(lines) or "no leave requests")

    run_admin(action, db=db, json_output=json_output)
