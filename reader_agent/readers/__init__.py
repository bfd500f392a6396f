"""Reader backends, chosen by a spec string ``backend[:target]`` and imported lazily.

The target is passed unchanged to the backend, which hands it to its library's own address
grammar where it has one (an nfcpy path, a pyserial URL):

=========================================  ===========================================
``pcsc`` / ``pcsc:<reader-name-substring>``  pyscard through pcscd
``nfc:<nfcpy path>``                         nfcpy, e.g. ``nfc:tty:USB0:pn532``, ``nfc:usb:054c:06c3``
``serial:<device or URL>?format=<fmt>``      pyserial UID reader (rdm6300, hexline, wiegand26)
``scripted``                                 :class:`~reader_agent.readers.scripted.ScriptedReader`
=========================================  ===========================================

A backend module exposes ``open_reader(target: str) -> Reader``. Importing this package loads
no hardware library: a kiosk with a serial reader needs neither pcsclite nor libusb.
"""

from __future__ import annotations

import importlib

from reader_agent.readers.base import (
    CardRead,
    CardReadError,
    CardTimeout,
    Reader,
    ReaderDisconnected,
    ReaderError,
    ReaderUnavailable,
    UnsupportedCard,
)

BACKENDS: dict[str, str] = {
    "pcsc": "reader_agent.readers.pcsc",
    "nfc": "reader_agent.readers.nfc",
    "serial": "reader_agent.readers.serial_port",
    "scripted": "reader_agent.readers.scripted",
}


def backend_module(spec: str) -> str:
    """The module of *spec*'s backend (not imported); raises ValueError for an unknown backend."""
    backend = spec.partition(":")[0]
    module_name = BACKENDS.get(backend)
    if module_name is None:
        raise ValueError(f"unknown reader backend {backend!r}; choose one of: {', '.join(sorted(BACKENDS))}")
    return module_name


def open_reader(spec: str) -> Reader:
    """Open the reader named by *spec*; raises ValueError for an unknown backend, ReaderError otherwise."""
    module = importlib.import_module(backend_module(spec))
    reader: Reader = module.open_reader(spec.partition(":")[2])
    return reader


__all__ = [
    "BACKENDS",
    "CardRead",
    "CardReadError",
    "CardTimeout",
    "Reader",
    "ReaderDisconnected",
    "ReaderError",
    "ReaderUnavailable",
    "UnsupportedCard",
    "backend_module",
    "open_reader",
]
