"""verify_storage: check a random sample of the blobs documents need, every run, so a
lost bucket or a bad lifecycle rule shows (documents marked missing_blob, the
sluice_documents{status="missing_blob"} gauge and its alert) before a client's
download does. `flask storage verify` checks them all."""
from __future__ import annotations

from cron.runner import JobContext
from documents.blob_audit import blobs_to_verify, verify
from documents.storage import from_config


def verify_storage(ctx: JobContext) -> dict:
    ctx.check()
    sample = blobs_to_verify(ctx.session, sample=ctx.config["STORAGE_VERIFY_SAMPLE"])
    result = verify(ctx.session, from_config(ctx.config), sample, quick=False,
                    actor="job:verify_storage")
    return result.as_dict()
