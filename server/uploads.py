"""What an uploaded file is, decided by its first bytes (its signature), not by its name.

Shared by every upload that keeps a photo or a scan (会议记录 attachments, 留言亭 photos): each
caller says which kinds it takes and how large a file may be. The name's extension must agree with
the content, so a renamed file is refused rather than served under a type it is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath

from server.errors import AttachmentTooLarge, AttachmentTypeRefused, InvalidInput
from server.inputs import check_text

MAX_FILE_NAME_LENGTH = 200


@dataclass(frozen=True)
class FileKind:
    media_type: str
    label: str
    extensions: tuple[str, ...]


JPEG = FileKind("image/jpeg", "JPEG 照片", (".jpg", ".jpeg"))
PNG = FileKind("image/png", "PNG 图片", (".png",))
PDF = FileKind("application/pdf", "PDF 扫描件", (".pdf",))
ALL_KINDS = (JPEG, PNG, PDF)
PHOTO_KINDS = (JPEG, PNG)


def sniff(data: bytes) -> FileKind | None:
    """The kind the content's signature says, or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
        return PNG
    if data.startswith(b"%PDF-"):
        return PDF
    return None


def checked_file(
    file_name: str,
    data: bytes,
    *,
    kinds: Sequence[FileKind],
    max_bytes: int,
    what: str,
    too_large: str,
) -> tuple[str, FileKind]:
    """The cleaned file name and the file's kind.

    ``what``: how the refusal names what may be uploaded (「JPEG、PNG 照片」); ``too_large``: the
    refusal of a file over ``max_bytes``, saying what to do about it.

    Raises:
        AttachmentTooLarge: more than ``max_bytes``.
        AttachmentTypeRefused: empty, not one of ``kinds`` by content, or named as another type.
        InvalidText/InvalidInput: a file name with refused characters, or none at all.
    """
    if len(data) > max_bytes:
        raise AttachmentTooLarge(too_large)
    name = clean_file_name(file_name)
    if not data:
        raise AttachmentTypeRefused("文件是空的，请重新选择")
    kind = sniff(data)
    if kind is None or kind not in kinds:
        raise AttachmentTypeRefused(f"只能上传 {what}；这个文件的内容不是其中任何一种")
    suffix = PurePosixPath(name).suffix.lower()
    if suffix and suffix not in kind.extensions:
        raise AttachmentTypeRefused(f"文件名是「{suffix}」，内容却是{kind.label}，请检查是否选错了文件")
    return name, kind


def clean_file_name(file_name: str) -> str:
    """The last path component (browsers on Windows may send a full path), at most 200 characters."""
    name = PureWindowsPath(PurePosixPath(check_text(file_name, field="文件名").strip()).name).name.strip()
    if not name:
        raise InvalidInput("请选择要上传的文件")
    if len(name) > MAX_FILE_NAME_LENGTH:
        stem, suffix = PurePosixPath(name).stem, PurePosixPath(name).suffix[:10]
        name = stem[: MAX_FILE_NAME_LENGTH - len(suffix)] + suffix
    return name
