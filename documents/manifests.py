"""Import manifests (CSV or XLSX), read as a stream of validated rows.

Columns: `filename` (required), `title`, `external_ref`, `tags` (comma- or
semicolon-separated); others are ignored. Row numbers are what a spreadsheet
shows: the header is row 1. Nothing here holds more than one row at a time.

An XLSX file is itself a ZIP of XML parts, and openpyxl reads some of them whole
(the shared strings). So before openpyxl sees one, `check_xlsx_parts` holds its
parts to the limits an archive's entries meet (count, overlap, ratio) and to size
caps of their own, from the central directory alone; zipfile never decompresses a
part past the size the directory declares. Only the first MAX_COLUMNS columns are
read, and a sheet may not run past max_rows (blank rows count: read-only openpyxl
fills every gap with an empty row). Manifests are parsed only by the import task.
"""
from __future__ import annotations

import csv
import dataclasses
import re
import unicodedata
from pathlib import Path
from typing import Any, Iterable, Iterator

from documents.archives import RATIO_FLOOR, UnsafeArchive, open_archive
from documents.problems import Problem

COLUMNS = ("filename", "title", "external_ref", "tags")
MAX_FIELD = 255
MAX_TAGS = 20
MAX_TAG = 64
# Unicode category Cc exactly. Format characters (Cf) such as the zero-width joiner
# occur in real names, so they are allowed.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# One cell of a hostile CSV must not be able to take all memory.
csv.field_size_limit(64 * 1024)
MAX_COLUMNS = 64                           # columns read from a sheet
XLSX_MAX_PARTS = 1000
XLSX_MAX_PART_BYTES = 32 * 1024 * 1024     # any one XML part, decompressed
XLSX_MAX_TOTAL_BYTES = 64 * 1024 * 1024    # all of them
XLSX_MAX_RATIO = 100.0                     # per part, decompressed / compressed


class InvalidManifest(Problem):
    """The manifest as a whole cannot be read; the import fails."""


@dataclasses.dataclass(frozen=True)
class ManifestRow:
    row_no: int
    filename: str
    title: str | None = None
    external_ref: str | None = None
    tags: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ManifestProblem:
    row_no: int
    filename: str | None
    code: str
    message: str


def read_manifest(path: Path, kind: str,
                  max_rows: int) -> Iterator[ManifestRow | ManifestProblem]:
    """Every data row, validated, in order; InvalidManifest if the file is unreadable,
    or runs past `max_rows` rows (blank ones included) after its header."""
    if kind == "csv":
        return _rows(_csv_cells(path), max_rows)
    if kind == "xlsx":
        return _rows(_xlsx_cells(path), max_rows)
    raise InvalidManifest("invalid_manifest", f"Unknown manifest kind {kind!r}.")


def check_xlsx_parts(path: Path) -> None:
    """InvalidManifest unless the XLSX's parts are within the limits; reads only its
    central directory, so the web can run it on an upload."""
    try:
        with open_archive(str(path), XLSX_MAX_PARTS) as workbook:
            parts = workbook.infolist()
    except UnsafeArchive as exc:
        raise InvalidManifest("unsafe_manifest", f"The XLSX manifest is refused: {exc}") \
            from None
    total = 0
    for part in parts:
        total += part.file_size
        if part.file_size > XLSX_MAX_PART_BYTES or total > XLSX_MAX_TOTAL_BYTES:
            raise InvalidManifest("unsafe_manifest", "The XLSX manifest expands past "
                                  f"{XLSX_MAX_TOTAL_BYTES // (1024 * 1024)} MiB.")
        if (part.file_size > RATIO_FLOOR
                and part.file_size > XLSX_MAX_RATIO * max(part.compress_size, 1)):
            raise InvalidManifest("unsafe_manifest", "A part of the XLSX manifest expands "
                                  f"more than {XLSX_MAX_RATIO:g}x.")


def _csv_cells(path: Path) -> Iterator[list[Any]]:
    # utf-8-sig drops a BOM; newline="" lets the csv module see quoted newlines.
    with open(path, encoding="utf-8-sig", newline="") as handle:
        try:
            yield from csv.reader(handle)
        except UnicodeDecodeError:
            raise InvalidManifest("invalid_manifest", "The CSV manifest is not UTF-8.") from None
        except csv.Error as exc:
            raise InvalidManifest("invalid_manifest", f"The CSV manifest is malformed ({exc}).") \
                from None


def _xlsx_cells(path: Path) -> Iterator[tuple[Any, ...]]:
    import openpyxl  # only imports need it; keep the web process lean

    check_xlsx_parts(path)
    # A file object, not the path: openpyxl refuses paths without an .xlsx suffix.
    with open(path, "rb") as handle:
        try:
            # Read-only mode streams the sheet; normal mode builds every cell (~50x the file).
            workbook = openpyxl.load_workbook(handle, read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many types for a broken file
            raise InvalidManifest("invalid_manifest", "The XLSX manifest cannot be opened "
                                  f"({type(exc).__name__}).") from None
        try:
            if not workbook.worksheets:
                raise InvalidManifest("invalid_manifest", "The XLSX manifest has no sheet.")
            yield from workbook.worksheets[0].iter_rows(values_only=True, max_col=MAX_COLUMNS)
        finally:
            workbook.close()


def _header(cells: Iterable[Any]) -> dict[str, int]:
    names = [_text(c).strip().lower() for c in cells]
    if "filename" not in names:
        raise InvalidManifest("invalid_manifest", "The manifest has no 'filename' column.")
    return {name: names.index(name) for name in COLUMNS if name in names}


def _rows(cells: Iterator[Any], max_rows: int) -> Iterator[ManifestRow | ManifestProblem]:
    header = None
    for row_no, row in enumerate(cells, 1):
        if row_no > max_rows + 1:
            raise InvalidManifest("manifest_too_long",
                                  f"The manifest runs past {max_rows} rows.")
        if header is None:
            header = _header(row)
            continue
        values = {name: _text(row[i]).strip() if i < len(row) else ""
                  for name, i in header.items()}
        if not any(values.values()):
            continue  # blank lines, trailing spreadsheet rows
        yield _validate(row_no, values)
    if header is None:
        raise InvalidManifest("invalid_manifest", "The manifest is empty.")


def _validate(row_no: int, values: dict[str, str]) -> ManifestRow | ManifestProblem:
    filename = unicodedata.normalize("NFC", values.get("filename", "")).removeprefix("./")

    def problem(message: str) -> ManifestProblem:
        return ManifestProblem(row_no, filename[:500] or None, "invalid_row", message)

    if not filename:
        return problem("The filename is empty.")
    for column in COLUMNS:
        value = values.get(column, "")
        if _has_control(value):
            return problem(f"The {column} contains control characters.")
        if column != "tags" and len(value) > MAX_FIELD:
            return problem(f"The {column} is longer than {MAX_FIELD} characters.")
    tags = tuple(t.strip() for t in values.get("tags", "").replace(";", ",").split(",")
                 if t.strip())
    if len(tags) > MAX_TAGS or any(len(t) > MAX_TAG for t in tags):
        return problem(f"At most {MAX_TAGS} tags of up to {MAX_TAG} characters each.")
    return ManifestRow(row_no, filename, values.get("title") or None,
                       values.get("external_ref") or None, tags)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a spreadsheet's 1234 is not "1234.0"
    return str(value)


def _has_control(value: str) -> bool:
    return CONTROL.search(value) is not None
