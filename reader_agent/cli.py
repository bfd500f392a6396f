"""``ecard agent`` (placeholder until the agent lands)."""

import typer

app = typer.Typer(no_args_is_help=True, help="Kiosk reader agent.")
