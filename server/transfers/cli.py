"""``ecard admin transfer``: 组织关系转入 requests and their expiry sweep."""

from __future__ import annotations

from typing import Annotated

import typer

from server.cli_support import AdminContext, DbOption, JsonOption, Outcome, run_admin

transfer_app = typer.Typer(no_args_is_help=True, help="组织关系转入 requests and their expiry sweep.")


@transfer_app.command("list")
def transfer_list(
    org: Annotated[int | None, typer.Option("--org", help="Only requests for this subtree.")] = None,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only requests past their deadline.")] = False,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """The open transfer-in requests, oldest first, with each step's deadline."""

    def action(ctx: AdminContext) -> Outcome:
        from server.transfers.calendar import transfer_policy
        from server.transfers.queue import list_queue

        queue = list_queue(
            ctx.session,
            caller=ctx.caller,
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

    run_admin(action, db=db, json_output=json_output)


@transfer_app.command("expire-lapsed")
def transfer_expire_lapsed(json_output: JsonOption = False, db: DbOption = None) -> None:
    """Move pending requests whose 介绍信 has lapsed to 'expired' (run daily, e.g. from cron)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.transfers.calendar import transfer_policy
        from server.transfers.service import expire_lapsed_requests

        expired = expire_lapsed_requests(ctx.session, policy=transfer_policy(ctx.settings), now=ctx.now)
        return Outcome({"expired": expired}, f"{len(expired)} request(s) expired")

    run_admin(action, db=db, json_output=json_output)
