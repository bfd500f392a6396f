"""Tap ingest: signed envelopes in, one stored row and one receipt per envelope out."""
