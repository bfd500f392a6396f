"""``ecard server`` and ``ecard admin`` (placeholder until the server lands)."""

import typer

server_app = typer.Typer(no_args_is_help=True, help="Run and migrate the server.")
admin_app = typer.Typer(no_args_is_help=True, help="Administer organisations, members, cards, kiosks.")
