"""``ecard admin user``: web app users."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from server.cli_support import AdminContext, DbOption, JsonOption, Outcome, fail_usage, run_admin
from server.vocabulary import UserRole

user_app = typer.Typer(no_args_is_help=True, help="Web app users (secretaries, organisers, admins).")


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="Sign-in name: lower-case letters, digits, '.', '_', '-'.")],
    role: Annotated[UserRole, typer.Option("--role", help="secretary | organiser | admin | representative.")],
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
        from server.users.service import add_user

        user = add_user(
            ctx.session,
            username=name,
            display_name=display_name or name,
            password=password,
            role=role,
            org_id=org,
            now=ctx.now,
            caller=ctx.caller,
        )
        data = {"id": user.id, "username": user.username, "role": user.role.value, "org_id": user.org_id}
        scope = f"organisation {user.org_id}" if user.org_id is not None else "all organisations"
        return Outcome(data, f"user {user.id} added: {user.username} ({user.role.value}, {scope})")

    run_admin(action, db=db, json_output=json_output)


def _read_new_password(json_output: bool) -> str:
    # Never an option or argument: those end up in shell history and `ps`.
    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            fail_usage("the passwords do not match", json_output)
        return password
    line = sys.stdin.readline()
    password = line[:-1] if line.endswith("\n") else line
    if not password:
        fail_usage("no password on stdin (pipe it in, e.g. from a password manager)", json_output)
    return password.removesuffix("\r")
