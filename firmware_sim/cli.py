"""``ecard sim`` (placeholder until the simulators land)."""

import typer

app = typer.Typer(no_args_is_help=True, help="Simulated cards and reader firmware.")
