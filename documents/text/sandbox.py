"""Run documents/text/extract.py on one file under hard limits, and read what it printed.

A clean verdict says a file holds no known malware, not that it is safe to parse: a
PDF of 10,000 pages, a PNG that decodes to gigabytes or a page 100,000 pixels wide
are all clean. So the reading happens in a subprocess with
- a CPU-time and an address-space limit it puts on itself before it opens the file
  (RLIMIT_CPU, RLIMIT_AS), inherited by pdftotext, pdftoppm and tesseract;
- a wall-clock limit here, past which its whole process group is killed;
- an environment of PATH and the OCR settings only: no database URL, no keys.

Whatever stopped it, the pages it printed before are kept: the result is `limited`
with that text, never an exception that would retry the same bomb in a loop.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from documents.text import EXTRACTED, FAILED, LIMITED, OCR, SKIPPED

# what the child may see of the worker's environment
PASSED_ENV = ("PATH", "TESSDATA_PREFIX", "OMP_THREAD_LIMIT")


@dataclasses.dataclass(frozen=True)
class Limits:
    languages: str = "eng"
    max_pages: int = 50
    max_pixels: int = 40_000_000
    max_chars: int = 1_000_000
    cpu_seconds: int = 120
    memory_bytes: int = 1024 ** 3
    wall_seconds: float = 180.0

    @classmethod
    def from_config(cls, config) -> "Limits":
        return cls(languages=config["OCR_LANGUAGES"], max_pages=config["OCR_MAX_PAGES"],
                   max_pixels=config["OCR_MAX_PIXELS"], max_chars=config["TEXT_MAX_CHARS"],
                   cpu_seconds=config["EXTRACT_CPU_SECONDS"],
                   memory_bytes=config["EXTRACT_MEMORY_BYTES"],
                   wall_seconds=config["EXTRACT_TIMEOUT"])


@dataclasses.dataclass(frozen=True)
class Extraction:
    status: str          # extracted | ocr | limited | failed | skipped
    text: str
    pages_ocr: int
    seconds: float
    preview: bool        # the preview file was written
    reason: str | None   # why limited, failed or skipped (a code, never file content)


def run(path: Path, content_type: str, limits: Limits,
        preview: Path | None = None) -> Extraction:
    started = time.monotonic()
    command = [sys.executable, "-m", "documents.text.extract", str(path),
               "--type", content_type, "--languages", limits.languages,
               "--max-pages", str(limits.max_pages), "--max-pixels", str(limits.max_pixels),
               "--max-chars", str(limits.max_chars),
               "--cpu-seconds", str(limits.cpu_seconds),
               "--memory-bytes", str(limits.memory_bytes)]
    if preview is not None:
        command += ["--preview", str(preview)]
    env = {key: os.environ[key] for key in PASSED_ENV if key in os.environ}
    env.setdefault("OMP_THREAD_LIMIT", "1")  # one core per extraction: the queue scales out
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    timed_out = False
    try:
        printed, _ = child.communicate(timeout=limits.wall_seconds)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(child.pid)
        printed, _ = child.communicate()
    finally:
        _kill_group(child.pid)  # a tool it started and left behind
    return _read(printed, child.returncode, timed_out, time.monotonic() - started,
                 limits.max_chars)


def installed_languages() -> set[str] | None:
    """tesseract's installed language packs; None when tesseract is not installed."""
    if shutil.which("tesseract") is None:
        return None
    try:
        listed = subprocess.run(["tesseract", "--list-langs"], capture_output=True,
                                timeout=10, check=True).stdout.decode("utf-8", "replace")
    except (OSError, subprocess.SubprocessError):
        return None
    return {line.strip() for line in listed.splitlines()[1:] if line.strip()}


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read(printed: bytes, returncode: int, timed_out: bool, seconds: float,
          max_chars: int) -> Extraction:
    pages, pages_ocr, preview = [], 0, False
    limited = failed = skipped = None
    done = False
    for raw in printed.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue  # a line cut short by a kill
        if "page" in line:
            pages.append(str(line.get("text", "")))
            pages_ocr += bool(line.get("ocr"))
        limited = line.get("limited", limited)
        failed = line.get("failed", failed)
        skipped = line.get("skipped", skipped)
        preview = preview or bool(line.get("preview"))
        done = done or bool(line.get("done"))
    text = "\n\n".join(page.strip() for page in pages if page.strip())[:max_chars]
    if timed_out:
        limited = "timeout"
    elif not done and returncode is not None and returncode < 0:
        limited = limited or f"signal_{-returncode}"  # RLIMIT_CPU's SIGXCPU, SIGKILL
    if limited:
        status, reason = LIMITED, limited
    elif failed or not done:
        status, reason = FAILED, failed or f"exit_{returncode}"
    elif skipped and not text:
        status, reason = SKIPPED, skipped
    else:
        status, reason = (OCR if pages_ocr else EXTRACTED), skipped
    return Extraction(status, text, pages_ocr, seconds, preview, reason)
