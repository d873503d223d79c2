"""Content-addressed blob storage: STORAGE_DIR/sha256/ab/cd/<hash>.

Kept behind this small interface (put, open, path, quarantine, temp files) so an
S3-compatible store can replace the local directory later.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO


class LocalStorage:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.tmp = self.root / "tmp"

    def temp_file(self, mode: str = "wb") -> tuple[BinaryIO, Path]:
        self.tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.tmp, suffix=".part")
        return os.fdopen(fd, mode), Path(name)

    def path(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256[:2] / sha256[2:4] / sha256

    def put(self, temp: Path, sha256: str) -> None:
        """Move a finished temp file into place; an existing blob is never rewritten."""
        target = self.path(sha256)
        if target.exists():
            temp.unlink(missing_ok=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, target)  # atomic within one filesystem

    def open(self, sha256: str) -> BinaryIO:
        return self.path(sha256).open("rb")

    def is_quarantined(self, sha256: str) -> bool:
        return (self.root / "quarantine" / sha256).exists()

    def quarantine(self, sha256: str) -> None:
        """Move infected bytes where nothing serves them from."""
        source = self.path(sha256)
        if source.exists():
            destination = self.root / "quarantine" / sha256
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(source), destination)
