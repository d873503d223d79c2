"""file:///abs/path: blobs in a local directory (one host, or a shared filesystem)."""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import BinaryIO, Iterator
from urllib.parse import unquote, urlsplit

from documents.storage import QUARANTINE, BlobStorage, blob_key


class LocalStorage(BlobStorage):
    name = "file"

    def __init__(self, root: str | Path, spool_dir: str | Path | None = None):
        self.root = Path(root)
        super().__init__(spool_dir or self.root / "tmp")

    @classmethod
    def from_url(cls, url: str, spool_dir: str | Path, **_options) -> "LocalStorage":
        parts = urlsplit(url)
        if parts.netloc or not parts.path.startswith("/"):
            raise ValueError("a file STORAGE_URL is file:///absolute/path")
        return cls(unquote(parts.path), spool_dir)

    def path(self, sha256: str) -> Path:
        return self.root / blob_key(sha256)

    def _quarantined(self, sha256: str) -> Path:
        return self.root / QUARANTINE / sha256

    def put(self, path: Path, sha256: str) -> None:
        target = self.path(sha256)
        if target.exists():
            path.unlink(missing_ok=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(path, target)  # atomic within one filesystem
        except OSError:  # the spool is on another filesystem: copy, then rename into place
            partial = target.with_suffix(".part")
            shutil.copyfile(path, partial)
            os.replace(partial, target)
            path.unlink(missing_ok=True)

    def open(self, sha256: str) -> BinaryIO:
        return self.path(sha256).open("rb")

    @contextlib.contextmanager
    def local_copy(self, sha256: str) -> Iterator[Path]:
        path = self.path(sha256)
        if not path.exists():
            raise FileNotFoundError(blob_key(sha256))
        yield path  # already a local, seekable file

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def size(self, sha256: str) -> int:
        return self.path(sha256).stat().st_size

    def is_quarantined(self, sha256: str) -> bool:
        return self._quarantined(sha256).exists()

    def quarantine(self, sha256: str) -> None:
        source = self.path(sha256)
        if source.exists():
            destination = self._quarantined(sha256)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(source), destination)
        self.delete_preview(sha256)

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)
        self.delete_preview(sha256)

    def put_named(self, key: str, path: Path, content_type: str) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        shutil.copyfile(path, partial)
        os.replace(partial, target)

    def open_named(self, key: str) -> BinaryIO:
        return (self.root / key).open("rb")

    def delete_named(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def blobs(self) -> Iterator[tuple[str, float]]:
        for path in (self.root / "sha256").glob("*/*/*"):
            if path.is_file() and len(path.name) == 64:
                yield path.name, path.stat().st_mtime

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise PermissionError(f"{self.root} is not writable")
