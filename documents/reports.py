"""CSV reports that are safe to open in a spreadsheet."""
from __future__ import annotations

import csv
import io
from typing import Iterable, Iterator

# A cell starting with one of these is a formula to Excel, LibreOffice and Sheets.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(value: object) -> object:
    """Text that a spreadsheet would evaluate gets a leading apostrophe (OWASP)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return "" if value is None else value


def csv_lines(header: Iterable[str], rows: Iterable[Iterable[object]]) -> Iterator[str]:
    """The report one line at a time, so a large one is streamed, not built."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(cells: Iterable[object]) -> str:
        writer.writerow(cells)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield line(header)
    for row in rows:
        yield line([escape_cell(value) for value in row])
