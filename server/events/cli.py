"""``ecard admin event``: schedule events and print their sign-in sheets.

Both verbs are registered by the CLI assembly (``server.cli``), not here: ``add`` lives with
attendance (``server.attendance.cli.event_add``), because scheduling an event decides the taps
already made in its window again, and ``attendance`` with the ledgers; events import neither.
"""

from __future__ import annotations

import typer

event_app = typer.Typer(no_args_is_help=True, help="Events (会议/活动) and their sign-in sheets.")
