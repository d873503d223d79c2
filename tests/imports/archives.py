"""ZIP archives and manifests built by the tests, hostile ones included."""
from __future__ import annotations

import csv
import io
import stat
import struct
import warnings
import zipfile

EOCD = b"PK\x05\x06"
CENTRAL = b"PK\x01\x02"


def build(entries: list[tuple[str | zipfile.ZipInfo, bytes]],
          compression=zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are deliberate in some tests
        with zipfile.ZipFile(out, "w", compression) as archive:
            for name, data in entries:
                archive.writestr(name, data)
    return out.getvalue()


def symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # unix, so the mode bits in external_attr count
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


def mark_encrypted(data: bytes, name: str) -> bytes:
    """Set the "encrypted" flag of one entry in its central directory record."""
    raw = bytearray(data)
    position = raw.find(CENTRAL)
    while position != -1:
        name_length = struct.unpack_from("<H", raw, position + 28)[0]
        if raw[position + 46:position + 46 + name_length] == name.encode():
            flags = struct.unpack_from("<H", raw, position + 8)[0]
            struct.pack_into("<H", raw, position + 8, flags | 0x1)
            return bytes(raw)
        position = raw.find(CENTRAL, position + 4)
    raise ValueError(name)


def ratio_bomb(uncompressed: int, name: str = "zeros.txt") -> bytes:
    """One entry of zeros: about 1000x smaller compressed, written in chunks."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open(name, "w", force_zip64=True) as member:
            chunk = b"\0" * (1024 * 1024)
            for _ in range(uncompressed // len(chunk)):
                member.write(chunk)
    return out.getvalue()


def overlapping_bomb(copies: int = 200, size: int = 4 * 1024 * 1024) -> bytes:
    """Fifield's construction, simplified: many directory records share one entry's data."""
    single = ratio_bomb(size, "kernel.txt")
    eocd = single.rfind(EOCD)
    cd_size, cd_offset = struct.unpack_from("<II", single, eocd + 12)
    record = single[cd_offset:cd_offset + cd_size]
    records = b"".join(record for _ in range(copies))
    tail = bytearray(single[eocd:eocd + 22])
    struct.pack_into("<HHII", tail, 8, copies, copies, len(records), cd_offset)
    return single[:cd_offset] + records + bytes(tail)


def csv_manifest(rows: list[dict], bom: bool = False,
                 columns=("filename", "title", "external_ref", "tags")) -> bytes:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return (b"\xef\xbb\xbf" if bom else b"") + text.getvalue().encode("utf-8")


def xlsx_manifest(rows: list[dict],
                  columns=("filename", "title", "external_ref", "tags")) -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("manifest")
    sheet.append(list(columns))
    for row in rows:
        sheet.append([row.get(c) for c in columns])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _rewrite_xlsx(base: bytes, parts: dict[str, bytes]) -> bytes:
    """`base` with some of its XML parts replaced, each deflated at the highest level."""
    source, out = zipfile.ZipFile(io.BytesIO(base)), io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as target:
        for info in source.infolist():
            target.writestr(info.filename, parts.get(info.filename, source.read(info)))
        for name, data in parts.items():
            if name not in source.namelist():
                target.writestr(name, data)
    return out.getvalue()


def xlsx_shared_strings_bomb(strings: int) -> bytes:
    """A small XLSX whose shared-strings part (which openpyxl reads whole) holds
    `strings` tiny strings: tens of KB on the wire, tens of MB of XML."""
    base = xlsx_manifest([{"filename": "a.pdf"}])
    xml = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
           b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
           + f'count="{strings}" uniqueCount="{strings}">'.encode()
           + b"<si><t>a</t></si>" * strings + b"</sst>")
    return _rewrite_xlsx(base, {"xl/sharedStrings.xml": xml})


def xlsx_far_row(row: int) -> bytes:
    """A valid XLSX with a header and one cell at `row`: a few hundred bytes of XML,
    but read-only openpyxl yields an empty row for every row of the gap."""
    base = xlsx_manifest([])
    sheet = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
             b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
             b'<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>filename</t></is></c></row>'
             + f'<row r="{row}"><c r="A{row}" t="inlineStr"><is><t>a.pdf</t></is></c></row>'
             .encode() + b"</sheetData></worksheet>")
    names = zipfile.ZipFile(io.BytesIO(base)).namelist()
    [sheet_name] = [n for n in names if n.startswith("xl/worksheets/sheet")]
    return _rewrite_xlsx(base, {sheet_name: sheet})
