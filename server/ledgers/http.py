"""Shared HTTP helpers for ledger endpoints: the ``format`` parameter and the file response."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Query, Response

from server.ledgers.render import ExportFormat, Ledger, render_ledger

FormatQuery = Annotated[ExportFormat, Query(alias="format", description="json, csv, xlsx or pdf")]


def ledger_response(ledger: Ledger, fmt: ExportFormat) -> Response:
    """The ledger as JSON, or as a download in the requested format."""
    rendered = render_ledger(ledger, fmt)
    headers = {}
    if fmt != ExportFormat.JSON:
        name = quote(rendered.filename)
        headers["Content-Disposition"] = (
            f"attachment; filename=\"{rendered.filename}\"; filename*=UTF-8''{name}"
        )
    return Response(content=rendered.content, media_type=rendered.media_type, headers=headers)
