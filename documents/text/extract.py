"""Read one file's text, as a program of its own: `python -m documents.text.extract`.

It runs in a subprocess (documents/text/sandbox.py) and first puts hard limits on
itself (CPU seconds, address space), which the tools it starts (pdftotext, pdftoppm,
tesseract) inherit. It prints one JSON object a line, as it goes, so that what it read
before a limit stopped it is not lost:

    {"page": 3, "text": "...", "ocr": true}   a page (or a whole text file) read
    {"limited": "why"}                        a cap was reached; what follows is partial
    {"skipped": "why"}                        nothing could read it (OCR not installed)
    {"preview": true}                         the preview PNG was written
    {"done": true}                            it finished

It imports nothing of Sluice's, and takes nothing from its environment but PATH and
the OCR settings: a file that exploits a parser finds no secret here to take.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

OCR_DPI = 300
PREVIEW_PX = 256
# fewer letters or digits than this on a PDF page: a scan, so OCR it
MIN_PAGE_CHARS = 16
TOOL_TIMEOUT = 120  # seconds one tool run may take (the sandbox's wall clock is the cap)
# C0 controls other than tab, newline and form feed: never text, and PostgreSQL refuses NUL
CONTROLS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_PAGE_SIZE = re.compile(r"^Page\s+(\d+)\s+size:\s+([\d.]+)\s+x\s+([\d.]+)", re.M)
_PAGES = re.compile(r"^Pages:\s+(\d+)", re.M)


class Limited(Exception):
    """A cap was reached; the reason goes out as {"limited": ...}."""


class Output:
    """The JSON lines on stdout, and the character budget they share."""

    def __init__(self, max_chars: int):
        self.left = max_chars

    @staticmethod
    def emit(**line) -> None:
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    def page(self, number: int, text: str, ocr: bool) -> None:
        text = CONTROLS.sub("", text)
        if len(text) > self.left:
            self.emit(page=number, text=text[:self.left], ocr=ocr)
            self.left = 0
            raise Limited("text_max_chars")
        self.left -= len(text)
        self.emit(page=number, text=text, ocr=ocr)


def run_tool(args: list[str], stdin: bytes | None = None) -> bytes:
    """A tool's stdout; Limited if a limit killed it (a signal), RuntimeError if it failed."""
    done = subprocess.run(args, input=stdin, capture_output=True, timeout=TOOL_TIMEOUT,
                          stdin=None if stdin is not None else subprocess.DEVNULL)
    if done.returncode < 0:  # SIGXCPU, SIGKILL, SIGSEGV from a failed allocation
        raise Limited(f"{Path(args[0]).name}_signal_{-done.returncode}")
    if done.returncode != 0:
        raise RuntimeError(f"{Path(args[0]).name} exited {done.returncode}")
    return done.stdout


def ocr_available() -> bool:
    return shutil.which("tesseract") is not None


def ocr_image(path: Path, languages: str) -> str:
    return run_tool(["tesseract", str(path), "-", "-l", languages, "--psm", "3"]).decode(
        "utf-8", "replace")


# PDF ----------------------------------------------------------------------------------

def pdf_pages(path: Path, last: int) -> tuple[int, dict[int, tuple[float, float]]]:
    """(page count, {page: (width, height) in points} for pages 1..last)."""
    info = run_tool(["pdfinfo", "-f", "1", "-l", str(last), str(path)]).decode(
        "utf-8", "replace")
    count = _PAGES.search(info)
    sizes = {int(n): (float(w), float(h)) for n, w, h in _PAGE_SIZE.findall(info)}
    return (int(count.group(1)) if count else 0), sizes


def read_pdf(path: Path, out: Output, args, tmp: Path) -> None:
    count, sizes = pdf_pages(path, args.max_pages)
    last = min(count, args.max_pages)
    if last and args.preview:
        run_tool(["pdftoppm", "-f", "1", "-l", "1", "-singlefile", "-scale-to", str(PREVIEW_PX),
                  "-png", str(path), str(Path(args.preview).with_suffix(""))])
        out.emit(preview=True)
    layer = run_tool(["pdftotext", "-f", "1", "-l", str(last), "-enc", "UTF-8", str(path),
                      "-"]).decode("utf-8", "replace").split("\f") if last else []
    limited = None
    for number in range(1, last + 1):
        text = layer[number - 1] if number - 1 < len(layer) else ""
        if sum(c.isalnum() for c in text) >= MIN_PAGE_CHARS:
            out.page(number, text, ocr=False)
            continue
        if not ocr_available():
            out.emit(skipped="ocr_unavailable")
            out.page(number, text, ocr=False)
            continue
        width, height = sizes.get(number, (0.0, 0.0))
        if width / 72 * OCR_DPI * height / 72 * OCR_DPI > args.max_pixels:
            limited = "ocr_max_pixels"  # this page is not rasterised; the rest still are
            out.page(number, text, ocr=False)
            continue
        # PGM, uncompressed: writing it as PNG took longer than the OCR of the page
        image = tmp / f"page-{number}"
        run_tool(["pdftoppm", "-f", str(number), "-l", str(number), "-singlefile", "-r",
                  str(OCR_DPI), "-gray", str(path), str(image)])
        out.page(number, ocr_image(image.with_suffix(".pgm"), args.languages), ocr=True)
        image.with_suffix(".pgm").unlink()
    if count > args.max_pages:
        raise Limited("ocr_max_pages")
    if limited:
        raise Limited(limited)


# Images -------------------------------------------------------------------------------

def read_image(path: Path, out: Output, args, tmp: Path) -> None:
    from PIL import Image

    # The header says how large it is; nothing is decoded past the cap (a PNG of a few
    # KB can claim 20,000 x 20,000 pixels, which is 400 MB decoded).
    Image.MAX_IMAGE_PIXELS = args.max_pixels
    try:
        opened = Image.open(path)
    except Image.DecompressionBombError:  # past twice the cap, Pillow refuses by itself
        raise Limited("ocr_max_pixels") from None
    with opened as image:
        width, height = image.size
        if width * height > args.max_pixels:
            raise Limited("ocr_max_pixels")
        frames = getattr(image, "n_frames", 1)
        if args.preview:
            preview = image.copy()
            preview.thumbnail((PREVIEW_PX, PREVIEW_PX))
            preview.convert("RGB" if preview.mode not in ("L", "RGB") else preview.mode).save(
                args.preview, "PNG")
            out.emit(preview=True)
        if not ocr_available():
            out.emit(skipped="ocr_unavailable")
            return
        for number in range(1, min(frames, args.max_pages) + 1):
            if frames == 1:
                source = path
            else:  # one TIFF page at a time, so that the page cap holds
                image.seek(number - 1)
                source = tmp / f"frame-{number}.png"
                image.save(source, "PNG")
            out.page(number, ocr_image(source, args.languages), ocr=True)
        if frames > args.max_pages:
            raise Limited("ocr_max_pages")


# Office files and plain text ----------------------------------------------------------

def read_docx(path: Path, out: Output, args, tmp: Path) -> None:
    import docx

    document = docx.Document(str(path))
    lines = [paragraph.text for paragraph in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            lines.append("\t".join(cell.text for cell in row.cells))
    out.page(1, "\n".join(lines), ocr=False)


def read_xlsx(path: Path, out: Output, args, tmp: Path) -> None:
    import openpyxl

    # a file object: given a path, openpyxl refuses one without an .xlsx extension
    handle = path.open("rb")
    book = openpyxl.load_workbook(handle, read_only=True, data_only=True)
    try:
        for number, sheet in enumerate(book.worksheets, 1):
            rows = ("\t".join(str(v) for v in row if v is not None)
                    for row in sheet.iter_rows(values_only=True))
            out.page(number, "\n".join(row for row in rows if row), ocr=False)
    finally:
        book.close()
        handle.close()


def read_plain(path: Path, out: Output, args, tmp: Path) -> None:
    with path.open("rb") as handle:  # UTF-8 takes at most 4 bytes a character
        raw = handle.read(out.left * 4 + 4)
    out.page(1, raw.decode("utf-8-sig", "replace"), ocr=False)


READERS = {
    "application/pdf": read_pdf,
    "image/png": read_image,
    "image/jpeg": read_image,
    "image/tiff": read_image,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": read_docx,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": read_xlsx,
    "text/plain": read_plain,
    "text/csv": read_plain,
}


def limit_self(cpu_seconds: int, memory_bytes: int) -> None:
    """Hard caps on this process, inherited by every tool it starts."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="documents.text.extract")
    parser.add_argument("path", type=Path)
    parser.add_argument("--type", required=True)
    parser.add_argument("--languages", default="eng")
    parser.add_argument("--max-pages", type=int, default=50)
    parser.add_argument("--max-pixels", type=int, default=40_000_000)
    parser.add_argument("--max-chars", type=int, default=1_000_000)
    parser.add_argument("--cpu-seconds", type=int, default=120)
    parser.add_argument("--memory-bytes", type=int, default=1024 ** 3)
    parser.add_argument("--preview", default=None)
    args = parser.parse_args(argv)
    limit_self(args.cpu_seconds, args.memory_bytes)
    out = Output(args.max_chars)
    reader = READERS.get(args.type)
    if reader is None:
        out.emit(skipped="type_not_read")
        out.emit(done=True)
        return 0
    with tempfile.TemporaryDirectory(prefix="sluice-extract-") as tmp:
        try:
            reader(args.path, out, args, Path(tmp))
        except Limited as exc:
            out.emit(limited=str(exc))
        except MemoryError:
            out.emit(limited="memory")
        except subprocess.TimeoutExpired:
            out.emit(limited="tool_timeout")
        except Exception as exc:  # a file the parser refuses: failed, with the kind only
            out.emit(failed=type(exc).__name__)
            return 1
    out.emit(done=True)
    return 0


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
