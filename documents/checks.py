"""The checks every incoming file passes before it is stored: single uploads and
archive entries alike. Adding one is a function here and one line in CHECKS.

A check reads the spooled file and what the sender claimed about it, and either
returns (it may fill in a fact, such as the type) or raises `Rejected` with the
HTTP status and code the caller reports. The virus scan is not here: it runs
after the file is stored, in the scan task, and may take retries.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from documents.sniffing import Rejected, name_for_type, sniff

__all__ = ["CHECKS", "Candidate", "Rejected", "check"]


@dataclasses.dataclass
class Candidate:
    path: Path
    size: int
    sha256: str
    filename: str                 # already sanitised
    declared_type: str | None     # what the sender said, if anything
    allowlist: tuple[str, ...]
    mime_type: str | None = None  # decided by sniff_type


def sniff_type(candidate: Candidate) -> None:
    """libmagic's type, inside the allowlist and consistent with what was declared."""
    candidate.mime_type = sniff(candidate.path, candidate.size, candidate.declared_type,
                                candidate.filename, candidate.allowlist)


def name_by_type(candidate: Candidate) -> None:
    """A filename whose last extension says what the content is (sniff_type already
    refused a known extension that disagrees): `polyglot.html` holding a PDF is kept
    as `polyglot.html.pdf`, so whoever downloads it opens a PDF, not a page."""
    candidate.filename = name_for_type(candidate.filename, candidate.mime_type)


CHECKS: tuple[Callable[[Candidate], None], ...] = (
    sniff_type,
    name_by_type,
)


def check(candidate: Candidate) -> Candidate:
    """Run every check in order; Rejected from the first that refuses."""
    for one in CHECKS:
        one(candidate)
    return candidate
