"""The kiosk never loads server code and the server never loads reader drivers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _modules_after_import(module: str) -> set[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


def _roots(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


@pytest.mark.parametrize(
    "module",
    [
        "reader_agent.agent",
        "reader_agent.cli",
        "reader_agent.outbox",
        "reader_agent.uploader",
        "reader_agent.readers",
    ],
)
def test_agent_does_not_import_server_stack(module: str) -> None:
    """A kiosk image need not ship FastAPI, SQLModel or the server package."""
    roots = _roots(_modules_after_import(module))
    assert not roots & {"server", "fastapi", "sqlmodel", "sqlalchemy", "alembic", "uvicorn", "psycopg"}


@pytest.mark.parametrize("module", ["server.app", "server.cli"])
def test_server_does_not_import_reader_drivers(module: str) -> None:
    """The server needs neither pcsclite, libusb nor serial ports, nor agent code."""
    roots = _roots(_modules_after_import(module))
    assert not roots & {"reader_agent", "smartcard", "nfc", "serial", "usb1", "firmware_sim"}


def test_opening_the_reader_registry_loads_no_driver() -> None:
    """Importing the registry loads no hardware library; each backend loads its own lazily."""
    roots = _roots(_modules_after_import("reader_agent.readers"))
    assert not roots & {"smartcard", "nfc", "serial", "usb1"}


def test_cli_starts_without_loading_either_stack() -> None:
    """`ecard --help` is fast on every machine: no drivers and no web stack at import."""
    roots = _roots(_modules_after_import("ecard_cli.main"))
    assert not roots & {"smartcard", "nfc", "serial", "fastapi", "sqlmodel", "sqlalchemy", "uvicorn"}
