"""`flask storage migrate --to URL`: copy every blob to another backend; `flask storage
verify`: check that the store still holds every blob a document needs."""
from __future__ import annotations

import getpass
import hashlib
import sys

import click
from flask import current_app
from flask.cli import AppGroup

from documents.blob_audit import Verified, blobs_to_verify, verify
from documents.models import referenced_blobs
from documents.storage import BlobStorage, StorageUnavailable, open_storage
from tasks.app_state import storage
from webapp.extensions import db

storage_cli = AppGroup("storage", help="Document blob storage.")


@storage_cli.command("migrate")
@click.option("--to", "target_url", required=True,
              help="The backend to copy to: file:///path or s3://bucket/prefix.")
def migrate(target_url: str) -> None:
    """Copy every blob a row refers to into another backend, checking each copy's
    SHA-256. Idempotent and resumable: blobs already there are skipped. Quarantined
    bytes stay where they are: nothing may serve them."""
    config = current_app.config
    try:
        # the target is written with this configuration's S3_SSE, as every write is
        target = open_storage(target_url, config["SPOOL_DIR"],
                              endpoint_url=config.get("S3_ENDPOINT_URL"),
                              sse=config.get("S3_SSE"),
                              sse_kms_key_id=config.get("S3_SSE_KMS_KEY_ID"))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--to") from None
    source = storage()
    hashes = sorted(referenced_blobs(db.session))
    counts = {"copied": 0, "already_there": 0, "missing_at_source": 0, "failed": 0}
    for number, sha256 in enumerate(hashes, 1):
        counts[_copy(source, target, sha256)] += 1
        if number % 100 == 0 or number == len(hashes):
            click.echo(f"{number}/{len(hashes)} " + " ".join(
                f"{name}={value}" for name, value in counts.items()))
    click.echo("done: " + " ".join(f"{name}={value}" for name, value in counts.items()))
    if counts["failed"]:
        sys.exit(1)


def _copy(source: BlobStorage, target: BlobStorage, sha256: str) -> str:
    try:
        if target.exists(sha256):
            return "already_there"
        handle, path = target.temp_file("wb")
        digest = hashlib.sha256()
        try:
            with handle, source.open(sha256) as blob:
                while chunk := blob.read(1024 * 1024):
                    digest.update(chunk)
                    handle.write(chunk)
            if digest.hexdigest() != sha256:
                click.echo(f"{sha256}: the source's bytes do not match their hash", err=True)
                return "failed"
            target.put(path, sha256)
        finally:
            path.unlink(missing_ok=True)
        return "copied"
    except FileNotFoundError:
        click.echo(f"{sha256}: not in the source backend", err=True)
        return "missing_at_source"
    except (StorageUnavailable, OSError) as exc:
        click.echo(f"{sha256}: {type(exc).__name__}", err=True)
        return "failed"


@storage_cli.command("verify")
@click.option("--sample", type=click.IntRange(1, 1_000_000),
              help="Check this many blobs chosen at random, not all of them.")
@click.option("--quick", is_flag=True,
              help="Check existence and size only, not each blob's SHA-256.")
def verify_command(sample: int | None, quick: bool) -> None:
    """Check that each blob a document needs exists, with its size and SHA-256. Missing
    or corrupt blobs mark their documents missing_blob (audited; never served); blobs
    found again put theirs back to pending_scan, with a scan queued. Exits 1 when any
    blob is missing or corrupt, or the store cannot be read."""
    actor = f"cli:{getpass.getuser()}"
    session, blobs, result = db.session, storage(), Verified()
    try:
        if sample is not None:
            verify(session, blobs, blobs_to_verify(session, sample=sample), quick=quick,
                   actor=actor, result=result)
        else:
            after = ""
            while batch := blobs_to_verify(session, after=after):
                verify(session, blobs, batch, quick=quick, actor=actor, result=result)
                after = batch[-1][0]
                click.echo(_counts(result))
    except StorageUnavailable as exc:
        click.echo(f"the store cannot be read ({exc}); nothing more was checked", err=True)
        click.echo(_counts(result))
        sys.exit(1)
    click.echo("done: " + _counts(result))
    if result.missing or result.corrupt:
        sys.exit(1)


def _counts(result: Verified) -> str:
    return " ".join(f"{name}={value}" for name, value in result.as_dict().items())
