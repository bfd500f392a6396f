"""``ecard`` console script.

Sub-command modules import only typer at module level; each command imports what it needs when
it runs, so ``ecard agent`` on a kiosk never loads the server stack and vice versa.
"""

from __future__ import annotations

import typer

from firmware_sim.cli import app as sim_app
from reader_agent.cli import app as agent_app
from server.cli import admin_app, server_app
from server.cli_support import CheckedArgsGroup

# CheckedArgsGroup: no argument holding NUL or another refused character reaches any command.
app = typer.Typer(
    cls=CheckedArgsGroup,
    no_args_is_help=True,
    add_completion=False,
    help="党员e通卡 check-in & identity service",
)
app.add_typer(server_app, name="server")
app.add_typer(admin_app, name="admin")
app.add_typer(agent_app, name="agent")
app.add_typer(sim_app, name="sim")


@app.command()
def demo(
    port: int = typer.Option(8000, help="Port for the demo server."),
    taps: int = typer.Option(20, help="How many simulated cards to tap."),
    keep_running: bool = typer.Option(True, help="Keep running until Ctrl-C after the taps."),
) -> None:
    """Run the whole system on SQLite with simulated cards: server, kiosk agent, 20 taps."""
    from ecard_cli.demo import run_demo

    raise typer.Exit(run_demo(port=port, taps=taps, keep_running=keep_running))


def run() -> None:
    app()
