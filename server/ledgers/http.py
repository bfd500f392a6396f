"""Shared HTTP helpers for ledger endpoints: the ``format`` parameter and the file response."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Query, Response
from sqlmodel import Session

from server.ledgers.exports import ExportContext, export_ledger
from server.ledgers.render import ExportFormat, Ledger

FormatQuery = Annotated[ExportFormat, Query(alias="format", description="json, csv, xlsx or pdf")]


def ledger_response(
    session: Session, ledger: Ledger, fmt: ExportFormat, *, context: ExportContext
) -> Response:
    """The ledger as JSON, or as a download in the requested format (recorded, with its
    verification code: ``server.ledgers.exports``)."""
    rendered = export_ledger(session, ledger, fmt, context=context)
    headers = {}
    if fmt != ExportFormat.JSON:
        name = quote(rendered.filename)
        headers["Content-Disposition"] = (
            f"attachment; filename=\"{rendered.filename}\"; filename*=UTF-8''{name}"
        )
    return Response(content=rendered.content, media_type=rendered.media_type, headers=headers)
