"""What an uploaded attachment is, decided by its first bytes (its signature), not by its name.

A photo of the meeting or a scanned page: JPEG, PNG or PDF. The name's extension must agree with
the content, so a renamed file is refused rather than served under a type it is not.
"""

from __future__ import annotations

from server.uploads import ALL_KINDS, JPEG, PDF, PNG, FileKind, checked_file, clean_file_name, sniff

MAX_ATTACHMENT_BYTES = 8 * 1024 * 1024
"""A phone photo is 2–5 MB; a scanned page as PDF less."""

MAX_ATTACHMENTS = 20
KINDS = ALL_KINDS
KIND_BY_MEDIA_TYPE = {kind.media_type: kind for kind in KINDS}
__all__ = ["JPEG", "KINDS", "PDF", "PNG", "FileKind", "checked_upload", "clean_file_name", "sniff"]


def checked_upload(file_name: str, data: bytes) -> tuple[str, FileKind]:
    """The cleaned file name and the file's kind: JPEG, PNG or PDF, at most
    :data:`MAX_ATTACHMENT_BYTES` (see :func:`server.uploads.checked_file` for the refusals)."""
    return checked_file(
        file_name,
        data,
        kinds=KINDS,
        max_bytes=MAX_ATTACHMENT_BYTES,
        what="JPEG、PNG 照片或 PDF 扫描件",
        too_large=f"附件不能超过{MAX_ATTACHMENT_BYTES // (1024 * 1024)} MB，请压缩照片或分页扫描后再上传",
    )
