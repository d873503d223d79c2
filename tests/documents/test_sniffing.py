import pytest

from documents.sniffing import DEFAULT_ALLOWLIST, DOCX, XLSX, Rejected, sanitize_filename, sniff
from tests.documents import files


def sniffed(tmp_path, content, filename, declared=None):
    path = tmp_path / "upload"
    path.write_bytes(content)
    return sniff(path, len(content), declared, filename, DEFAULT_ALLOWLIST)


@pytest.mark.parametrize("content, filename, expected", [
    (files.pdf(), "a.pdf", "application/pdf"),
    (files.png(), "a.png", "image/png"),
    (files.ooxml("word"), "a.docx", DOCX),
    (files.ooxml("xl"), "a.xlsx", XLSX),
    (b"name,amount\n", "one-line.csv", "text/csv"),
    (b"just some notes\n", "notes.txt", "text/plain"),
])
def test_real_libmagic_with_its_known_misses_handled(tmp_path, content, filename, expected):
    assert sniffed(tmp_path, content, filename) == expected


@pytest.mark.parametrize("content, filename, declared, code", [
    (files.pdf(), "invoice.png", None, "type_mismatch"),
    (files.png(), "photo.png", "application/pdf", "type_mismatch"),
    (b"\x7fELF\x02\x01\x01" + b"\x00" * 64, "tool.pdf", None, "unsupported_type"),
    (b"PK\x03\x04" + b"\x00" * 40, "archive.zip", None, "unsupported_type"),
])
def test_wrong_or_unsupported_types_are_refused_with_415(tmp_path, content, filename,
                                                         declared, code):
    with pytest.raises(Rejected) as refused:
        sniffed(tmp_path, content, filename, declared)
    assert (refused.value.status, refused.value.code) == (415, code)


def test_empty_files_are_refused(tmp_path):
    with pytest.raises(Rejected) as refused:
        sniffed(tmp_path, b"", "empty.txt")
    assert (refused.value.status, refused.value.code) == (400, "empty_file")


def test_a_generic_declared_type_does_not_count_as_a_mismatch(tmp_path):
    assert sniffed(tmp_path, files.pdf(), "a", "application/octet-stream") == "application/pdf"


@pytest.mark.parametrize("raw, clean", [
    ("../../etc/passwd", "passwd"), ("C:\\Users\\x\\report.pdf", "report.pdf"),
    ("bad\x00name\r\n.pdf", "badname.pdf"), ("", "upload"), ("...", "upload"),
    ("a" * 300 + ".pdf", "a" * 251 + ".pdf"),
])
def test_filenames_are_sanitised(raw, clean):
    assert sanitize_filename(raw) == clean


def test_sniffing_a_long_text_file_reads_only_its_head(tmp_path):
    # libmagic's own limit (7 MiB) made each large text upload add ~15 MB to the web
    # worker's peak RSS. Measured in a fresh process: VmHWM is per process.
    import subprocess
    import sys

    small, path = tmp_path / "short.txt", tmp_path / "long.txt"
    small.write_bytes(b"warm up: load the database\n")
    path.write_bytes(b"plain words on a line and again and again\n" * 280_000)  # 12 MB
    script = f"""
from pathlib import Path
from documents.sniffing import DEFAULT_ALLOWLIST, sniff

def hwm_mb():
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM"))
    return int(line.split()[1]) / 1024

sniff(Path({str(small)!r}), 27, None, "short.txt", DEFAULT_ALLOWLIST)
before = hwm_mb()
print(sniff(Path({str(path)!r}), {path.stat().st_size}, None, "long.txt", DEFAULT_ALLOWLIST),
      round(hwm_mb() - before, 1))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True)
    mime, grown = result.stdout.split()
    assert mime == "text/plain"
    assert float(grown) < 6, f"sniffing grew the peak RSS by {grown} MB"
