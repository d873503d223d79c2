"""What a file really is, by libmagic, with its known misses handled."""
from __future__ import annotations

import functools
import mimetypes
import os
import re
import unicodedata
import zipfile
from pathlib import Path

import magic

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
DEFAULT_ALLOWLIST = ("application/pdf", "image/png", "image/jpeg", "image/tiff",
                     "text/plain", "text/csv", DOCX, XLSX)
BY_EXTENSION = {".pdf": "application/pdf", ".png": "image/png", ".jpg": "image/jpeg",
                ".jpeg": "image/jpeg", ".tif": "image/tiff", ".tiff": "image/tiff",
                ".txt": "text/plain", ".csv": "text/csv", ".docx": DOCX, ".xlsx": XLSX,
                ".pptx": PPTX}
# The extension a stored name gets when its own says nothing known about the content.
EXTENSION_OF = {"application/pdf": ".pdf", "image/png": ".png", "image/jpeg": ".jpg",
                "image/tiff": ".tif", "text/plain": ".txt", "text/csv": ".csv", DOCX: ".docx",
                XLSX: ".xlsx", PPTX: ".pptx"}
OOXML_PARTS = {"word/": DOCX, "xl/": XLSX, "ppt/": PPTX}
# Declared types that say nothing about the content.
GENERIC = {"", "application/octet-stream", "binary/octet-stream"}
# A CSV is plain text to libmagic, so either name is consistent with the other.
COMPATIBLE = {frozenset({"text/plain", "text/csv"})}
MAX_FILENAME = 255
# libmagic 5.41 and newer read up to 7 MiB of a file to classify it, which for a long
# text upload raised the web worker's peak RSS by that much (bench/documents). Every
# type we accept is known by its first bytes; 256 KiB still gives the text-or-binary
# call a long sample.
SNIFF_BYTES = 256 * 1024


class Rejected(ValueError):
    def __init__(self, status: int, code: str, message: str, mime: str | None = None):
        super().__init__(message)
        self.status, self.code, self.mime = status, code, mime


def allowlist_from(configured: str) -> tuple[str, ...]:
    """A comma-separated setting, or the default allowlist when it is empty."""
    return tuple(t.strip() for t in (configured or "").split(",") if t.strip()) \
        or DEFAULT_ALLOWLIST


def sanitize_filename(name: str | None) -> str:
    """Metadata only: no path parts, no control characters, a bounded length."""
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[/\\\\]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip(" .")
    if len(name) > MAX_FILENAME:
        stem, ext = os.path.splitext(name)
        name = stem[:MAX_FILENAME - len(ext[:16])] + ext[:16]
    return name or "upload"


def name_for_type(filename: str, mime: str | None) -> str:
    """`filename` if its extension is a known one consistent with `mime`; else the name
    with the type's extension appended (bounded like any name)."""
    claimed = BY_EXTENSION.get(os.path.splitext(filename)[1].lower())
    wanted = EXTENSION_OF.get(mime or "") or mimetypes.guess_extension(mime or "") or ""
    if not wanted or (claimed and _same(claimed, mime)):
        return filename
    return filename[:MAX_FILENAME - len(wanted)] + wanted


def _ooxml_type(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    for prefix, mime in OOXML_PARTS.items():
        if any(n.startswith(prefix) for n in names) and "[Content_Types].xml" in names:
            return mime
    return None


@functools.cache
def _libmagic() -> magic.Magic:
    # Built on first use: loading libmagic's database costs memory, which
    # processes that never sniff (beat, the scan-only paths) need not pay.
    detector = magic.Magic(mime=True)
    detector.setparam(magic.MAGIC_PARAM_BYTES_MAX, SNIFF_BYTES)
    return detector


def _same(a: str, b: str) -> bool:
    return a == b or frozenset({a, b}) in COMPATIBLE


def sniff(path: Path, size: int, declared_type: str | None, filename: str,
          allowlist: tuple[str, ...]) -> str:
    """The type to store and serve, or Rejected (400 empty, 415 unsupported/mismatch)."""
    if size == 0:
        raise Rejected(400, "empty_file", "The file is empty.")
    mime = _libmagic().from_file(str(path))
    if mime in {"application/zip", "application/octet-stream"}:
        mime = _ooxml_type(path) or mime  # libmagic reports some OOXML files as zip
    extension = BY_EXTENSION.get(os.path.splitext(filename)[1].lower())
    declared = (declared_type or "").split(";")[0].strip().lower()
    if mime == "text/plain" and "text/csv" in (extension, declared):
        mime = "text/csv"  # a one-line CSV looks like plain text
    if mime not in allowlist:
        raise Rejected(415, "unsupported_type", f"Files of type {mime} are not accepted.",
                       mime)
    for claimed, what in ((declared, "Content-Type"), (extension, "file extension")):
        if claimed and claimed not in GENERIC and not _same(claimed, mime):
            raise Rejected(415, "type_mismatch",
                           f"The {what} says {claimed} but the content is {mime}.")
    return mime
