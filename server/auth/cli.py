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
            ctx.session, keyring=ctx.keyring, role=role, org_id=org, label=label, now=ctx.now
        )
        record = created.record
        data = {"id": record.id, "token": created.token, "role": record.role.value, "org_id": record.org_id}
        return Outcome(data, created.token)

    run_admin(action, db=db, json_output=json_output)
