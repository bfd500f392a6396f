"""``ecard admin token``: API bearer tokens."""

from __future__ import annotations

from typing import Annotated

import typer

from server.cli_support import AdminContext, DbOption, JsonOption, Outcome, run_admin
from server.vocabulary import TokenRole

token_app = typer.Typer(no_args_is_help=True, help="API bearer tokens.")


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
            ctx.session,
            keyring=ctx.keyring,
            role=role,
            org_id=org,
            label=label,
            caller=ctx.caller,
            now=ctx.now,
        )
        record = created.record
        data = {"id": record.id, "token": created.token, "role": record.role.value, "org_id": record.org_id}
        return Outcome(data, created.token)

    run_admin(action, db=db, json_output=json_output)


@token_app.command("list")
def token_list(json_output: JsonOption = False, db: DbOption = None) -> None:
    """Every token: id, role, organisation, label, created, revoked (never the token itself)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.auth.service import list_tokens

        rows = [
            {
                "id": t.id,
                "role": t.role.value,
                "org_id": t.org_id,
                "label": t.label,
                "created_at": t.created_at.isoformat(),
                "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
            }
            for t in list_tokens(ctx.session)
        ]
        lines = [
            f"{r['id']}  {r['role']}  org {r['org_id'] or '-'}  {r['label'] or '-'}"
            + (f"  revoked {r['revoked_at']}" if r["revoked_at"] else "")
            for r in rows
        ]
        return Outcome({"tokens": rows}, "\n".join(lines) or "no tokens")

    run_admin(action, db=db, json_output=json_output)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[int, typer.Argument(help="The token's id (ecard admin token list).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit log).")] = "",
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Revoke a token: every request with it is refused from now on (401 invalid_token)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.auth.service import revoke_token

        record = revoke_token(ctx.session, token_id, reason=reason, caller=ctx.caller, now=ctx.now)
        revoked_at = record.revoked_at.isoformat() if record.revoked_at else None
        return Outcome({"id": record.id, "revoked_at": revoked_at}, f"token {record.id} revoked")

    run_admin(action, db=db, json_output=json_output)
