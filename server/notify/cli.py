"""``ecard admin notify``: group robots, e-mail addresses, opt-outs, and the delivery outbox.

Secrets never appear in arguments (shell history, ``ps``): a robot's signing secret is read from
stdin, or generated and printed once. Addresses are shown masked.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from server.cli_support import AdminContext, DbOption, JsonOption, Outcome, fail_usage, iso, run_admin
from server.vocabulary import DeliveryState, NotifyChannel

notify_app = typer.Typer(no_args_is_help=True, help="Reminder delivery: group robots, e-mail, the outbox.")

RecipientUser = Annotated[int | None, typer.Option("--user", help="A web user's id (their e-mail).")]
RecipientOrg = Annotated[int | None, typer.Option("--org", help="An organisation's id (its group robot).")]


@notify_app.command("webhook-set")
def webhook_set(
    org: Annotated[int, typer.Argument(help="Organisation id.")],
    url: Annotated[str, typer.Option("--url", help="The group robot's webhook URL.")],
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Send an organisation's digests and meeting notices to a group robot (企业微信/钉钉 style).

    The signing secret is the first line of stdin; with none (a terminal, or empty input), one
    is generated and printed once: give it to whoever runs the receiver.
    """
    secret = _secret_from_stdin()

    def action(ctx: AdminContext) -> Outcome:
        from server.notify.service import mask_address, set_org_webhook

        result = set_org_webhook(
            ctx.session, org_id=org, url=url, secret=secret, caller=ctx.caller, now=ctx.now
        )
        data: dict[str, Any] = {"org_id": org, "url": mask_address(result.target.address)}
        text = f"organisation {org}: group robot {data['url']}"
        if result.generated_secret:
            data["secret"] = result.generated_secret
            text += f"\nsigning secret (shown once): {result.generated_secret}"
        return Outcome(data, text)

    run_admin(action, db=db, json_output=json_output)


@notify_app.command("webhook-remove")
def webhook_remove(
    org: Annotated[int, typer.Argument(help="Organisation id.")],
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Stop using an organisation's group robot; its queued messages are given up."""

    def action(ctx: AdminContext) -> Outcome:
        from server.notify.service import remove_org_webhook

        dropped = remove_org_webhook(ctx.session, org_id=org, caller=ctx.caller, now=ctx.now)
        return Outcome(
            {"org_id": org, "dropped": dropped},
            f"organisation {org}: group robot removed ({dropped} dropped)",
        )

    run_admin(action, db=db, json_output=json_output)


@notify_app.command("email-set")
def email_set(
    user: Annotated[int, typer.Argument(help="Web user id.")],
    address: Annotated[str, typer.Option("--address", help="E-mail address for the daily digest.")],
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Send a web user's daily digest to an e-mail address."""

    def action(ctx: AdminContext) -> Outcome:
        from server.notify.service import mask_address, set_user_email

        target = set_user_email(ctx.session, user_id=user, address=address, caller=ctx.caller, now=ctx.now)
        masked = mask_address(target.address)
        return Outcome({"user_id": user, "address": masked}, f"user {user}: e-mail {masked}")

    run_admin(action, db=db, json_output=json_output)


@notify_app.command("email-remove")
def email_remove(
    user: Annotated[int, typer.Argument(help="Web user id.")],
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Forget a web user's e-mail address; their queued messages are given up."""

    def action(ctx: AdminContext) -> Outcome:
        from server.notify.service import remove_user_email

        dropped = remove_user_email(ctx.session, user_id=user, caller=ctx.caller, now=ctx.now)
        return Outcome(
            {"user_id": user, "dropped": dropped}, f"user {user}: e-mail removed ({dropped} dropped)"
        )

    run_admin(action, db=db, json_output=json_output)


def _opt(
    opted_out: bool,
    channel: NotifyChannel,
    user: int | None,
    org: int | None,
    json_output: bool,
    db: str | None,
) -> None:
    if (user is None) == (org is None):
        fail_usage("give exactly one of --user and --org", json_output)
    recipient = f"user:{user}" if user is not None else f"org:{org}"

    def action(ctx: AdminContext) -> Outcome:
        from server.notify.service import set_opt_out

        changed = set_opt_out(
            ctx.session,
            recipient=recipient,
            channel=channel,
            opted_out=opted_out,
            caller=ctx.caller,
            now=ctx.now,
        )
        state = "opted out of" if opted_out else "opted in to"
        return Outcome(
            {"recipient": recipient, "channel": channel.value, "opted_out": opted_out, "changed": changed},
            f"{recipient} {state} {channel.value}" + ("" if changed else " (already)"),
        )

    run_admin(action, db=db, json_output=json_output)


@notify_app.command("opt-out")
def opt_out(
    channel: Annotated[NotifyChannel, typer.Argument(help="email | webhook.")],
    user: RecipientUser = None,
    org: RecipientOrg = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Stop messages to a user or an organisation on a channel (queued ones are given up)."""
    _opt(True, channel, user, org, json_output, db)


@notify_app.command("opt-in")
def opt_in(
    channel: Annotated[NotifyChannel, typer.Argument(help="email | webhook.")],
    user: RecipientUser = None,
    org: RecipientOrg = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Resume messages to a user or an organisation on a channel."""
    _opt(False, channel, user, org, json_output, db)


@notify_app.command("targets")
def targets(json_output: JsonOption = False, db: DbOption = None) -> None:
    """List group robots and e-mail addresses (masked), with opt-outs."""

    def action(ctx: AdminContext) -> Outcome:
        from server.notify.service import list_targets

        views = list_targets(ctx.session, caller=ctx.caller)
        rows = [
            {
                "recipient": v.recipient,
                "channel": v.channel.value,
                "address": v.address,
                "signed": v.has_secret,
                "opted_out": v.opted_out,
            }
            for v in views
        ]
        lines = [
            f"{r['recipient']:<12} {r['channel']:<8} {r['address']}"
            + ("  (opted out)" if r["opted_out"] else "")
            for r in rows
        ]
        return Outcome({"targets": rows}, "\n".join(lines) or "no targets")

    run_admin(action, db=db, json_output=json_output)


@notify_app.command("deliveries")
def deliveries(
    state: Annotated[DeliveryState | None, typer.Option("--state", help="queued | sent | failed.")] = None,
    user: RecipientUser = None,
    org: RecipientOrg = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Latest N.")] = 50,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """List the latest deliveries (addresses masked): state, attempts, last error."""
    recipient = f"user:{user}" if user is not None else f"org:{org}" if org is not None else None

    def action(ctx: AdminContext) -> Outcome:
        from server.notify.service import list_deliveries

        views = list_deliveries(ctx.session, caller=ctx.caller, state=state, recipient=recipient, limit=limit)
        tz = ctx.settings.tz
        rows = [
            {
                "id": v.id,
                "channel": v.channel.value,
                "kind": v.kind.value,
                "recipient": v.recipient,
                "address": v.address,
                "subject": v.subject,
                "state": v.state.value,
                "attempts": v.attempts,
                "next_attempt_at": iso(v.next_attempt_at, tz),
                "last_error": v.last_error,
                "created_at": iso(v.created_at, tz),
                "sent_at": iso(v.sent_at, tz) if v.sent_at else None,
            }
            for v in views
        ]
        lines = [
            f"{r['id']:>6} {r['state']:<6} {r['channel']:<7} {r['address']:<32} "
            f"x{r['attempts']} {r['subject']}" + (f"  [{r['last_error']}]" if r["last_error"] else "")
            for r in rows
        ]
        return Outcome({"deliveries": rows}, "\n".join(lines) or "no deliveries")

    run_admin(action, db=db, json_output=json_output)


@notify_app.command("deliver")
def deliver(json_output: JsonOption = False, db: DbOption = None) -> None:
    """Send what is due now (the server does this on its schedule)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.notify.service import deliver_due

        run = deliver_due(ctx.session, now=ctx.now, channels=ctx.settings)
        data = {"sent": run.sent, "retried": run.retried, "failed": run.failed, "held": run.held}
        return Outcome(data, f"sent {run.sent}, retried {run.retried}, failed {run.failed}, held {run.held}")

    run_admin(action, db=db, json_output=json_output)


def _secret_from_stdin() -> str | None:
    if sys.stdin is None or sys.stdin.isatty():
        return None
    line = sys.stdin.readline().strip()
    return line or None
