"""purge_retention: drop what we promised not to keep, never the record that it happened."""
from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy import delete, or_, select, update

from cron.models import JobRun
from cron.runner import JobContext, in_batches
from deliveries.models import FAILED as DELIVERY_FAILED
from deliveries.models import SUCCEEDED as DELIVERED
from deliveries.models import Delivery, DeliveryAttempt
from documents import direct_uploads, imports
from documents.deletion import delete_documents, release_blobs
from documents.models import Document, Import, referenced_blobs
from documents.storage import BlobStorage, from_config
from store import idempotency, subjects
from store.db import utcnow
from store.events import Event
from store.holds import documents_held, held_subjects
from store.outbox import OutboxMessage
from webhooks.models import DEAD, PROCESSED, WebhookEvent
from webhooks.processing import link_pending
from webhooks.sources import configured
from whatsapp.models import WhatsAppMessage

BATCH = 1000
TEMP_FILE_MAX_AGE = 24 * 3600


def purge_retention(ctx: JobContext) -> dict:
    now, days = utcnow(), dt.timedelta(days=1)
    config = ctx.config
    storage = from_config(config)
    # a source's own retention_days, else RETENTION_WEBHOOK_BODY_DAYS
    if ctx.session.scalar(select(held_subjects().exists())):
        link_pending(ctx.session)  # a held person's unprocessed bodies are found too
    own = {name: source.retention_days for name, source in
           configured(config, os.environ).items() if source.retention_days}
    bodies = sum(_drop_bodies(ctx, WebhookEvent.source == name, now - source_days * days)
                 for name, source_days in own.items())
    bodies += _drop_bodies(ctx, WebhookEvent.source.not_in(list(own)),
                           now - config["RETENTION_WEBHOOK_BODY_DAYS"] * days)
    texts = 0
    if config["RETENTION_MESSAGE_TEXT_DAYS"]:
        texts = in_batches(ctx, lambda: select(WhatsAppMessage.id).where(
            WhatsAppMessage.created_at < now - config["RETENTION_MESSAGE_TEXT_DAYS"] * days,
            or_(WhatsAppMessage.text.is_not(None), WhatsAppMessage.phone.is_not(None)),
            or_(WhatsAppMessage.phone_index.is_(None),  # a legal hold keeps a subject's
                WhatsAppMessage.phone_index.not_in(held_subjects()))),
            lambda ids: update(WhatsAppMessage).where(WhatsAppMessage.id.in_(ids))
            .values(text=None, phone=None, phone_index=None))
    import_rows = (_expired_import_rows(ctx, now - config["RETENTION_IMPORT_ROWS_DAYS"] * days)
                   if config["RETENTION_IMPORT_ROWS_DAYS"] else 0)
    runs = in_batches(ctx, lambda: select(JobRun.id).where(
        JobRun.started_at < now - config["RETENTION_JOB_RUNS_DAYS"] * days),
        lambda ids: delete(JobRun).where(JobRun.id.in_(ids)))
    outbox = in_batches(ctx, lambda: select(OutboxMessage.id).where(
        OutboxMessage.published_at < now - config["RETENTION_OUTBOX_DAYS"] * days),
        lambda ids: delete(OutboxMessage).where(OutboxMessage.id.in_(ids)))
    # a delivery's history goes with its event (finished ones; one still due fails
    # as event_expired when it is next tried)
    attempts = in_batches(ctx, lambda: select(DeliveryAttempt.id).where(
        DeliveryAttempt.attempted_at < now - config["RETENTION_EVENTS_DAYS"] * days),
        lambda ids: delete(DeliveryAttempt).where(DeliveryAttempt.id.in_(ids)))
    deliveries = in_batches(ctx, lambda: select(Delivery.id).where(
        Delivery.status.in_((DELIVERED, DELIVERY_FAILED)),
        Delivery.created_at < now - config["RETENTION_EVENTS_DAYS"] * days),
        lambda ids: delete(Delivery).where(Delivery.id.in_(ids)))
    logged = in_batches(ctx, lambda: select(Event.id).where(
        Event.created_at < now - config["RETENTION_EVENTS_DAYS"] * days),
        lambda ids: delete(Event).where(Event.id.in_(ids)))
    keys = in_batches(ctx, lambda: idempotency.expired_ids(now), idempotency.delete_ids)
    return {"webhook_bodies_dropped": bodies,
            "message_texts_redacted": texts,
            "documents_deleted": _old_documents(ctx, storage, now),
            "import_rows_deleted": import_rows, "job_runs_deleted": runs,
            "outbox_rows_deleted": outbox, "events_deleted": logged,
            "deliveries_deleted": deliveries, "delivery_attempts_deleted": attempts,
            "idempotency_keys_deleted": keys,
            "temp_files_removed": _old_temp_files(config),
            "orphan_blobs_removed": _orphan_blobs(ctx, storage),
            **_abandoned_uploads(ctx, storage)}


def _drop_bodies(ctx: JobContext, which, before: dt.datetime) -> int:
    """Drop the raw bodies of finished deliveries `which` received before `before`,
    except those naming someone a legal hold covers (store/subjects.py)."""
    return in_batches(ctx, lambda: select(WebhookEvent.id).where(
        which, WebhookEvent.body.is_not(None), WebhookEvent.status.in_((PROCESSED, DEAD)),
        WebhookEvent.received_at < before,
        WebhookEvent.id.not_in(subjects.linked(subjects.WEBHOOK_EVENT, held_subjects()))),
        lambda ids: update(WebhookEvent).where(WebhookEvent.id.in_(ids)).values(body=None))


def _expired_import_rows(ctx: JobContext, before: dt.datetime) -> int:
    """Imports finished before `before`: their counts kept on them, their rows that
    name no document deleted (documents/imports.py); a few imports a transaction."""
    total = 0
    while True:
        ctx.check()
        ids = list(ctx.session.scalars(imports.rows_to_expire(before).limit(10)))
        if not ids:
            return total
        for job in ctx.session.scalars(select(Import).where(Import.id.in_(ids))):
            total += imports.expire_rows(ctx.session, job)
        ctx.session.commit()


def _old_documents(ctx: JobContext, storage: BlobStorage, now: dt.datetime) -> int:
    """RETENTION_DOCUMENT_DAYS (0: off): older documents are deleted as their owner
    would delete them, bytes and all (documents/deletion.py)."""
    keep_days = ctx.config["RETENTION_DOCUMENT_DAYS"]
    if not keep_days:
        return 0
    total = 0
    while True:
        ctx.check()
        batch = list(ctx.session.scalars(select(Document).where(
            Document.created_at < now - dt.timedelta(days=keep_days),
            ~documents_held(Document.id, Document.owner_id))  # a legal hold keeps them
            .order_by(Document.id).limit(BATCH)))
        if not batch:
            return total
        hashes = delete_documents(ctx.session, batch, "system:retention")
        ctx.session.commit()
        release_blobs(ctx.session, storage, hashes)
        total += len(batch)


def _old_temp_files(config) -> int:
    # Uploads stream into this host's SPOOL_DIR; one left there a day is abandoned.
    removed, cutoff = 0, time.time() - TEMP_FILE_MAX_AGE
    for path in Path(config["SPOOL_DIR"]).glob("*"):
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _orphan_blobs(ctx: JobContext, storage: BlobStorage) -> int:
    """Remove blobs no row refers to, once they are older than the grace period.

    An upload stores its blob before it commits its row; a request that died in
    between leaves the blob behind. It is never served (every download starts from a
    clean row), and after ORPHAN_BLOB_GRACE_HOURS no commit can still be coming.
    """
    cutoff = time.time() - ctx.config["ORPHAN_BLOB_GRACE_HOURS"] * 3600
    return sum(_remove_unwanted(ctx, batch, storage.delete,
                                lambda hashes: referenced_blobs(ctx.session, among=hashes))
               for batch in _older_than(storage.blobs(), cutoff))


def _abandoned_uploads(ctx: JobContext, storage: BlobStorage) -> dict:
    """Direct uploads not completed in UPLOAD_COMPLETE_HOURS are expired, and objects
    left in the upload area that long are deleted, unless the worker is reading them
    (an ingested upload's object is deleted by the worker; one it could not delete,
    the store being away at that moment, ends here)."""
    hours = ctx.config["UPLOAD_COMPLETE_HOURS"]
    expired = direct_uploads.expire_abandoned(ctx.session, utcnow() - dt.timedelta(hours=hours))
    ctx.session.commit()
    removed = sum(_remove_unwanted(ctx, batch, storage.delete_upload,
                                   lambda names: direct_uploads.in_flight(ctx.session, names))
                  for batch in _older_than(storage.upload_objects(), time.time() - hours * 3600))
    return {"uploads_expired": expired, "upload_objects_removed": removed}


def _older_than(listing: Iterator[tuple[str, float]], cutoff: float) -> Iterator[list[str]]:
    """The names in a store listing modified before `cutoff`, in batches."""
    batch = []
    for name, modified in listing:
        if modified < cutoff:
            batch.append(name)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _remove_unwanted(ctx: JobContext, names: list[str], delete: Callable[[str], None],
                     still_needed: Callable[[list[str]], set[str]]) -> int:
    ctx.check()
    needed = still_needed(names)
    ctx.session.rollback()  # hold no transaction open while the store deletes
    unwanted = [name for name in names if name not in needed]
    for name in unwanted:
        delete(name)
    return len(unwanted)
