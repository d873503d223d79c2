"""CSV reports that are safe to open in a spreadsheet.

Every field is quoted, and text a spreadsheet would evaluate gets an apostrophe in
front (OWASP's advice): at the start of a field, and also after any character that
some reader takes as a separator or a line break (`,` `;` tab `|` CR LF), since a
spreadsheet set to another separator, or one that ignores quotes, splits the field
there and would see a formula at the start of the piece.
"""
from __future__ import annotations

import csv
import io
import re
from typing import Iterable, Iterator

# A cell starting with one of these is a formula to Excel, LibreOffice and Sheets.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_START = re.compile(r"(^|[,;|\t\r\n])(?=[=+\-@\t\r])")


def escape_cell(value: object) -> object:
    """The cell's text with every place a formula could start neutralised."""
    if isinstance(value, str):
        return _FORMULA_START.sub(r"\1'", value)
    return "" if value is None else value


def csv_lines(header: Iterable[str], rows: Iterable[Iterable[object]]) -> Iterator[str]:
    """The report one line at a time, so a large one is streamed, not built."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL)

    def line(cells: Iterable[object]) -> str:
        writer.writerow(cells)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield line(header)
    for row in rows:
        yield line([escape_cell(value) for value in row])
