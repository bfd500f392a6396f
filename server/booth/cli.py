"""``ecard admin booth``: 留言亭 representatives (党代表) and the retention of closed messages."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from server.cli_support import AdminContext, DbOption, JsonOption, Outcome, run_admin

if TYPE_CHECKING:
    from server.booth.service import PhotoUpload

_PHOTO_HELP = "JPEG or PNG, at most 5 MB"
PhotoOption = Annotated[
    Path | None,
    typer.Option(
        "--photo", exists=True, dir_okay=False, readable=True, help=f"{_PHOTO_HELP} (shown to members)."
    ),
]


def _photo_upload(path: Path) -> PhotoUpload:
    from server.booth.service import MAX_PHOTO_BYTES, PhotoUpload

    with path.open("rb") as file:
        return PhotoUpload(file_name=path.name, data=file.read(MAX_PHOTO_BYTES + 1))


booth_app = typer.Typer(no_args_is_help=True, help="留言亭: representatives (党代表) and messages.")


@booth_app.command("representative-add")
def representative_add(
    name: Annotated[str, typer.Option("--name", help="The representative's name.")],
    org: Annotated[int, typer.Option("--org", help="Members of this organisation's subtree may write.")],
    constituency: Annotated[
        str, typer.Option("--constituency", help="选区 or 代表团 (shown to members).")
    ] = "",
    user: Annotated[
        str | None, typer.Option("--user", help="Their web account (role representative): their inbox.")
    ] = None,
    photo: PhotoOption = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Configure a 党代表 whom members of the organisation (and below) can write to."""
    upload = _photo_upload(photo) if photo is not None else None

    def action(ctx: AdminContext) -> Outcome:
        from server.booth.service import add_representative

        representative = add_representative(
            ctx.session,
            org_id=org,
            name=name,
            constituency=constituency,
            username=user,
            now=ctx.now,
            caller=ctx.caller,
            photo=upload,
        )
        data = {
            "id": representative.id,
            "org_id": representative.org_id,
            "name": representative.name,
            "constituency": representative.constituency,
            "user_id": representative.user_id,
            "has_photo": representative.photo_id is not None,
        }
        return Outcome(data, f"representative {representative.id} added: {representative.name}")

    run_admin(action, db=db, json_output=json_output)


@booth_app.command("representative-photo")
def representative_photo(
    representative: Annotated[int, typer.Option("--id", help="The representative (see `representatives`).")],
    photo: Annotated[
        Path,
        typer.Option("--photo", exists=True, dir_okay=False, readable=True, help=f"{_PHOTO_HELP}."),
    ],
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Set or replace a 党代表's photo, shown to members choosing whom to write to."""
    upload = _photo_upload(photo)

    def action(ctx: AdminContext) -> Outcome:
        from server.booth.service import set_representative_photo

        updated = set_representative_photo(
            ctx.session, representative_id=representative, photo=upload, now=ctx.now, caller=ctx.caller
        )
        return Outcome({"id": updated.id, "has_photo": True}, f"representative {updated.id}: photo set")

    run_admin(action, db=db, json_output=json_output)


@booth_app.command("representatives")
def representatives(json_output: JsonOption = False, db: DbOption = None) -> None:
    """List the configured representatives."""

    def action(ctx: AdminContext) -> Outcome:
        from server.booth.service import list_representatives

        rows = list_representatives(ctx.session, caller=ctx.caller)
        data = [
            {
                "id": r.id,
                "org_id": r.org_id,
                "name": r.name,
                "constituency": r.constituency,
                "user_id": r.user_id,
                "active": r.active,
                "has_photo": r.photo_id is not None,
            }
            for r in rows
        ]
        lines = [f"{r.id}\t{r.org_id}\t{r.name}\t{r.constituency}" for r in rows] or ["no representatives"]
        return Outcome({"representatives": data}, "\n".join(lines))

    run_admin(action, db=db, json_output=json_output)


@booth_app.command("purge")
def purge(json_output: JsonOption = False, db: DbOption = None) -> None:
    """Delete messages closed longer ago than ECARD_BOOTH_RETENTION_DAYS (the audit log stays)."""

    def action(ctx: AdminContext) -> Outcome:
        from datetime import timedelta

        from server.booth.service import purge_closed

        retention = timedelta(days=ctx.settings.booth_retention_days)
        count = purge_closed(ctx.session, now=ctx.now, retention=retention, caller=ctx.caller)
        return Outcome({"deleted": count}, f"{count} closed messages deleted")

    run_admin(action, db=db, json_output=json_output)
