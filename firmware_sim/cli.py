"""``ecard sim``: simulated cards and reader firmware for demos, tests and manual checks."""

import typer

from firmware_sim.card_cli import card_app
from firmware_sim.issuer_cli import issuer_app
from firmware_sim.pn532_cli import pn532_app
from firmware_sim.serial_cli import serial_app

app = typer.Typer(no_args_is_help=True, help="Simulated cards and reader firmware.")
app.add_typer(card_app, name="card")
app.add_typer(serial_app, name="serial")
app.add_typer(pn532_app, name="pn532")
app.add_typer(issuer_app, name="issuer")
