"""``ecard admin card``: bind, report lost, revoke, replace and list 易通卡 bindings (masked).

``bind`` is registered by the CLI assembly (``server.cli``) from ``server.attendance.cli``: binding
a card decides its earlier taps again, which cards may not import.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from server.cli_support import AdminContext, DbOption, JsonOption, Outcome, ReasonOption, run_admin

card_app = typer.Typer(no_args_is_help=True, help="Card bindings (易通卡).")


def _binding_data(binding: Any) -> dict[str, Any]:
    return {
        "id": binding.id,
        "member_id": binding.member_id,
        "card_no_masked": binding.card_no_masked,
        "uid_masked": binding.uid_masked,
        "status": binding.status.value,
        "verified_level": binding.verified_level.value,
    }


@card_app.command("lost")
def card_lost(
    binding_id: int, reason: ReasonOption = "", json_output: JsonOption = False, db: DbOption = None
) -> None:
    """Report a card lost (挂失): its taps are refused with card_lost from now on."""

    def action(ctx: AdminContext) -> Outcome:
        from server.cards.lifecycle import report_card_lost

        binding = report_card_lost(
            ctx.session, binding_id=binding_id, caller=ctx.caller, now=ctx.now, reason=reason
        )
        return Outcome(_binding_data(binding), f"binding {binding.id} reported lost")

    run_admin(action, db=db, json_output=json_output)


@card_app.command("revoke")
def card_revoke(
    binding_id: int, reason: ReasonOption = "", json_output: JsonOption = False, db: DbOption = None
) -> None:
    """Revoke a card binding (consent withdrawn, member left)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.cards.lifecycle import revoke_card

        binding = revoke_card(
            ctx.session, binding_id=binding_id, caller=ctx.caller, now=ctx.now, reason=reason
        )
        return Outcome(_binding_data(binding), f"binding {binding.id} revoked")

    run_admin(action, db=db, json_output=json_output)


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
            caller=ctx.caller,
            now=ctx.now,
        )
        return Outcome(_binding_data(binding), f"binding {binding.id} replaces binding {binding_id}")

    run_admin(action, db=db, json_output=json_output)


@card_app.command("list")
def card_list(member_id: int, json_output: JsonOption = False, db: DbOption = None) -> None:
    """A member's cards, newest first (masked)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.cards.lifecycle import card_history

        bindings = card_history(ctx.session, member_id=member_id, caller=ctx.caller)
        rows = [_binding_data(b) for b in bindings]
        lines = [
            f"{r['id']}  {r['status']:<8} "
            + " / ".join(m for m in (r["card_no_masked"], r["uid_masked"]) if m)
            + f"  verified {r['verified_level']}"
            for r in rows
        ]
        return Outcome({"cards": rows}, "\n".join(lines) or "no cards")

    run_admin(action, db=db, json_output=json_output)
