"""Content-addressed blob storage, behind one small interface.

Keys are `sha256/ab/cd/<hash>`; the same bytes are written once; quarantined bytes
live under `quarantine/<hash>`, where nothing serves from. A clean blob's preview
(documents/text/) is `previews/ab/cd/<hash>.png`: it belongs to the bytes, so it goes
when they are deleted or quarantined. A backend that can
presign writes also has an upload area, `uploads/<name>`, which clients PUT into
directly and which nothing serves from either: the worker reads an object there
through the same checks as an upload, stores it under its hash and deletes it. Temp files (upload
spools, an archive being imported) are always local to the process's host, in
`spool_dir`; everything another host needs is in the backend.

A backend is one module here and one line in BACKENDS, chosen by STORAGE_URL's
scheme: `file:///abs/path` (the default) or `s3://bucket[/prefix]` (any
S3-compatible store: AWS S3, MinIO, R2, B2, Ceph RGW).
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator
from urllib.parse import urlsplit


@dataclasses.dataclass(frozen=True)
class Backend:
    """A backend's registration. `path` is "module:class", imported only when chosen
    (boto3 is heavy, and the default needs none of it); `presigns` says whether it can
    hand out short-lived URLs (DOWNLOAD_MODE=redirect, direct uploads), here so that
    checking it imports nothing."""
    path: str
    presigns: bool


BACKENDS = {
    "file": Backend("documents.storage.local:LocalStorage", presigns=False),
    "s3": Backend("documents.storage.s3:S3Storage", presigns=True),
}
QUARANTINE = "quarantine/"
UPLOADS = "uploads/"
PREVIEWS = "previews/"


class StorageUnavailable(RuntimeError):
    """The backend could not be reached or answered with an error; try again later."""


def blob_key(sha256: str) -> str:
    return f"sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"


def preview_key(sha256: str) -> str:
    return f"{PREVIEWS}{sha256[:2]}/{sha256[2:4]}/{sha256}.png"


class BlobStorage:
    """What every backend offers. `put` takes a finished local file; `open` streams."""

    name = "storage"

    def __init__(self, spool_dir: str | Path):
        self.spool_dir = Path(spool_dir)

    def temp_file(self, mode: str = "wb") -> tuple[BinaryIO, Path]:
        """A new local temp file (the spool), opened in `mode`, and its path."""
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.spool_dir, suffix=".part")
        return os.fdopen(fd, mode), Path(name)

    @contextlib.contextmanager
    def local_copy(self, sha256: str) -> Iterator[Path]:
        """A seekable local file of the blob for a `with` block (zipfile needs to seek)."""
        handle, path = self.temp_file("wb")
        try:
            with handle, self.open(sha256) as blob:
                while chunk := blob.read(1024 * 1024):
                    handle.write(chunk)
            yield path
        finally:
            path.unlink(missing_ok=True)

    # The backend's part ---------------------------------------------------------------------

    def put(self, path: Path, sha256: str) -> None:
        """Store a finished local file under its hash; an existing blob is never rewritten."""
        raise NotImplementedError

    def open(self, sha256: str) -> BinaryIO:
        """A streaming read of the blob (FileNotFoundError if there is none)."""
        raise NotImplementedError

    def exists(self, sha256: str) -> bool:
        raise NotImplementedError

    def size(self, sha256: str) -> int:
        """The stored blob's size in bytes (FileNotFoundError if there is none)."""
        raise NotImplementedError

    def is_quarantined(self, sha256: str) -> bool:
        raise NotImplementedError

    def quarantine(self, sha256: str) -> None:
        """Move the bytes under quarantine/, where nothing serves them from; their
        preview is deleted."""
        raise NotImplementedError

    def delete(self, sha256: str) -> None:
        """Delete the bytes and their preview."""
        raise NotImplementedError

    # Objects by name, beside the blobs: previews, audit log exports ----------------------

    def put_named(self, key: str, path: Path, content_type: str) -> None:
        """Store (or replace) the object `key` from a local file."""
        raise NotImplementedError

    def open_named(self, key: str) -> BinaryIO:
        """A streaming read of the object `key` (FileNotFoundError if there is none)."""
        raise NotImplementedError

    def delete_named(self, key: str) -> None:
        raise NotImplementedError

    def presign_named(self, key: str, expires_in: int, content_type: str) -> str | None:
        """A short-lived URL of the object `key`, if the backend can."""
        return None

    def put_preview(self, path: Path, sha256: str) -> None:
        """Store (or replace) the preview PNG of these bytes."""
        self.put_named(preview_key(sha256), path, "image/png")

    def open_preview(self, sha256: str) -> BinaryIO:
        return self.open_named(preview_key(sha256))

    def delete_preview(self, sha256: str) -> None:
        self.delete_named(preview_key(sha256))

    def presign_preview(self, sha256: str, expires_in: int) -> str | None:
        return self.presign_named(preview_key(sha256), expires_in, "image/png")

    def blobs(self) -> Iterator[tuple[str, float]]:
        """(sha256, last modified as a UNIX time) of every servable blob."""
        raise NotImplementedError

    def presign_get(self, sha256: str, filename_header: str, content_type: str,
                    expires_in: int) -> str | None:
        """A short-lived URL that serves the blob with these headers, if the backend can."""
        return None

    def check(self) -> None:
        """Raise if the backend cannot be used now (for /readyz)."""
        raise NotImplementedError

    # The upload area, where the backend can presign a client's PUT -------------------------

    def presign_upload(self, name: str, content_type: str, size: int,
                       expires_in: int, sha256: str | None = None) -> dict | None:
        """{method, url, headers} for one PUT of exactly `size` bytes to uploads/<name>
        (and, given `sha256` in hex, of exactly those bytes), or None when the backend
        cannot take writes from clients."""
        return None

    # A backend that cannot presign has an upload area that is always empty.

    def upload_size(self, name: str) -> int:
        """The stored size of uploads/<name> (FileNotFoundError if nothing was sent)."""
        raise FileNotFoundError(UPLOADS + name)

    def open_upload(self, name: str) -> BinaryIO:
        """A streaming read of uploads/<name> (FileNotFoundError if there is none)."""
        raise FileNotFoundError(UPLOADS + name)

    def delete_upload(self, name: str) -> None:
        pass

    def upload_objects(self) -> Iterator[tuple[str, float]]:
        """(name, last modified as a UNIX time) of every object in the upload area."""
        return iter(())


def open_storage(url: str, spool_dir: str | Path, **options) -> BlobStorage:
    """The backend for STORAGE_URL; ValueError if the URL names none."""
    scheme = urlsplit(url).scheme
    if scheme not in BACKENDS:
        raise ValueError(f"STORAGE_URL must start with one of "
                         f"{', '.join(s + '://' for s in BACKENDS)}")
    module, _, name = BACKENDS[scheme].path.partition(":")
    return getattr(importlib.import_module(module), name).from_url(url, spool_dir, **options)


def from_config(config) -> BlobStorage:
    """The backend a Sluice configuration names (STORAGE_URL, SPOOL_DIR, S3_ENDPOINT_URL,
    STORAGE_REQUEST_TIMEOUT, S3_SSE, S3_SSE_KMS_KEY_ID)."""
    return open_storage(config["STORAGE_URL"], config["SPOOL_DIR"],
                        endpoint_url=config.get("S3_ENDPOINT_URL"),
                        timeout=config.get("STORAGE_REQUEST_TIMEOUT", 20.0),
                        sse=config.get("S3_SSE"),
                        sse_kms_key_id=config.get("S3_SSE_KMS_KEY_ID"))
