"""Small real files of each kind, built by the tests."""
import io
import struct
import zipfile
import zlib

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def pdf(text: str = "hello") -> bytes:
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"]
    return pdf_of(objects)


def pdf_of(objects: list[bytes]) -> bytes:
    """A PDF file of these objects (numbered from 1, the first the catalog), with its xref."""
    out, offsets = io.BytesIO(), []
    out.write(b"%PDF-1.7\n")
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
              % (len(objects) + 1, xref))
    return out.getvalue()


def png() -> bytes:
    def chunk(kind, data):
        return struct.pack("!I", len(data)) + kind + data + struct.pack(
            "!I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack("!IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
            + chunk(b"IEND", b""))


def ooxml(kind: str, extra: dict[str, bytes] | None = None) -> bytes:
    """A minimal DOCX ("word") or XLSX ("xl") package."""
    main = {"word": "word/document.xml", "xl": "xl/workbook.xml"}[kind]
    content_type = {"word": "wordprocessingml.document.main+xml",
                    "xl": "spreadsheetml.sheet.main+xml"}[kind]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", (
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/'
            '2006/content-types"><Override PartName="/' + main + '" ContentType="application/'
            'vnd.openxmlformats-officedocument.' + content_type + '"/></Types>'))
        archive.writestr("_rels/.rels", '<?xml version="1.0"?><Relationships/>')
        archive.writestr(main, '<?xml version="1.0"?><document/>')
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return out.getvalue()


# Files with text to read (documents/text/) ---------------------------------------------

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"  # Debian's fonts-dejavu-core


def text_pdf(pages: list[str], size: tuple[float, float] = (612, 792)) -> bytes:
    """A PDF with a text layer: one line of Helvetica on each page, pages of `size` points."""
    count = len(pages)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
                   b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(count)), count),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    for number, text in enumerate(pages):
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 14 Tf 40 {size[1] - 60:.0f} Td ({escaped}) Tj ET".encode("latin-1")
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] "
                       b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>"
                       % (size[0], size[1], 5 + 2 * number))
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    return pdf_of(objects)


def rendered(lines: list[str], image_format: str = "PNG", size=(1400, 900)) -> bytes:
    """An image of `lines` in DejaVu Sans, black on white, as a scanner would make it;
    image_format PDF gives an image-only PDF (no text layer: a scan)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(FONT, 44)
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    for number, line in enumerate(lines):
        draw.text((60, 60 + 90 * number), line, font=font, fill=0)
    out = io.BytesIO()
    image.save(out, image_format, **({"resolution": 150} if image_format == "PDF" else {}))
    return out.getvalue()


def docx(paragraphs: list[str]) -> bytes:
    import docx as python_docx

    document = python_docx.Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def xlsx(rows: list[list]) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A real grayscale PNG of width x height white pixels: a few hundred KB that
    decode to width * height bytes."""
    def chunk(kind, data):
        return struct.pack("!I", len(data)) + kind + data + struct.pack(
            "!I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    compressor, parts = zlib.compressobj(9), []
    row = b"\x00" + b"\xff" * width
    rows_at_once = max(1, (8 * 1024 * 1024) // len(row))
    for start in range(0, height, rows_at_once):
        parts.append(compressor.compress(row * min(rows_at_once, height - start)))
    parts.append(compressor.flush())
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack("!IIBBBBB", width, height, 8, 0,
                                                              0, 0, 0))
            + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))
