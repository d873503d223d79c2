"""ZIP archives read safely: central-directory checks, per-entry verdicts, capped reads.

Nothing is ever extracted by name: members are streamed into temp files named by
the storage layer. Sizes in the headers are only used as a bound; the bytes that
come out of the decompressor are counted as they are read.
"""
from __future__ import annotations

import dataclasses
import posixpath
import stat
import unicodedata
import zipfile
from typing import BinaryIO

from documents.problems import Problem

ZIP_UTF8_FLAG = 0x800
ZIP_ENCRYPTED_FLAG = 0x1
LOCAL_HEADER_SIZE = 30
MANIFEST_NAMES = {"manifest.csv": "csv", "manifest.xlsx": "xlsx"}
# Archive types a member may not be (the document allowlist decides the rest).
ARCHIVE_TYPES = {"application/zip", "application/x-zip-compressed", "application/gzip",
                 "application/x-gzip", "application/x-tar", "application/x-7z-compressed",
                 "application/x-rar", "application/vnd.rar", "application/x-bzip2",
                 "application/x-xz", "application/zstd"}
# Under this many bytes out, any ratio is fine: tiny, very regular files compress well.
RATIO_FLOOR = 1024 * 1024


class UnsafeArchive(Problem):
    """The archive as a whole is refused (400 at upload, a failed import later)."""


class EntryRejected(Problem):
    """One entry is not imported; the rest go on."""


@dataclasses.dataclass(frozen=True)
class Limits:
    max_entries: int
    max_total_bytes: int
    max_ratio: float
    max_entry_bytes: int


def open_archive(file: BinaryIO | str, max_entries: int) -> zipfile.ZipFile:
    """Open a ZIP and check its central directory; UnsafeArchive if it must be refused."""
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise UnsafeArchive("invalid_archive", f"The archive is not a readable ZIP ({exc}).") \
            from None
    try:
        entries = archive.infolist()
        if len(entries) > max_entries:
            raise UnsafeArchive("too_many_entries",
                                f"The archive has {len(entries)} entries; the limit is "
                                f"{max_entries}.")
        _refuse_overlaps(entries)
    except BaseException:
        archive.close()
        raise
    return archive


def _refuse_overlaps(entries: list[zipfile.ZipInfo]) -> None:
    """Entries whose data overlap are the "overlapping files" zip bomb: refuse outright.

    Python only notices an overlap when that member is opened; checking the whole
    directory up front rejects the archive before any work is done.
    """
    end = -1
    for info in sorted(entries, key=lambda i: i.header_offset):
        if info.header_offset < end:
            raise UnsafeArchive("unsafe_archive",
                                "Entries of the archive overlap (a zip bomb construction).")
        name_length = len(info.orig_filename.encode(
            "utf-8" if info.flag_bits & ZIP_UTF8_FLAG else "cp437", errors="replace"))
        end = info.header_offset + LOCAL_HEADER_SIZE + name_length + info.compress_size


def normalized_name(info: zipfile.ZipInfo) -> str:
    return unicodedata.normalize("NFC", info.filename).removeprefix("./")


def entry_verdict(info: zipfile.ZipInfo) -> EntryRejected | None:
    """Why an entry must not be ingested, judged from its directory record alone."""
    name = normalized_name(info)
    parts = name.replace("\\", "/").split("/")
    if (name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":")
            or ".." in parts):
        return EntryRejected("unsafe_name", "The entry's path is absolute or leaves the archive.")
    if parts[0] == "__MACOSX" or any(part.startswith(".") for part in parts if part):
        return EntryRejected("junk_entry", "Metadata or hidden files are not imported.")
    if info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16):
        return EntryRejected("symlink", "Symbolic links are not imported.")
    if info.flag_bits & ZIP_ENCRYPTED_FLAG:
        return EntryRejected("encrypted", "Encrypted entries cannot be imported.")
    return None


def manifest_member(entries: list[zipfile.ZipInfo]) -> tuple[zipfile.ZipInfo, str] | None:
    """A top-level manifest.csv or manifest.xlsx inside the archive, if there is one."""
    for info in entries:
        kind = MANIFEST_NAMES.get(normalized_name(info).lower())
        if kind:
            return info, kind
    return None


def display_name(info: zipfile.ZipInfo) -> str:
    """The entry's name for reports: no control characters, bounded."""
    name = "".join(ch for ch in normalized_name(info) if unicodedata.category(ch)[0] != "C")
    return name[:500]


def base_name(info: zipfile.ZipInfo) -> str:
    return posixpath.basename(normalized_name(info).replace("\\", "/"))


class CappedMember:
    """A member's decompressed stream that refuses to exceed the ratio or total caps.

    The compressed input is bounded by the directory's compress_size (zipfile
    never reads past it); the output is what we count here.
    """

    def __init__(self, stream: BinaryIO, info: zipfile.ZipInfo, limits: Limits,
                 bytes_before: int):
        self._stream, self._limits = stream, limits
        self._ratio_cap = max(RATIO_FLOOR, limits.max_ratio * max(info.compress_size, 1))
        self._room = limits.max_total_bytes - bytes_before
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        chunk = self._stream.read(n)
        self.size += len(chunk)
        if self.size > self._ratio_cap:
            raise EntryRejected("compression_ratio",
                                f"The entry expands more than {self._limits.max_ratio:g}x.")
        if self.size > self._room:
            raise EntryRejected("total_size_exceeded",
                                "The archive expands past the total size limit of "
                                f"{self._limits.max_total_bytes} bytes.")
        return chunk
