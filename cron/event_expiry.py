"""expire_webhook_events: delete webhook events past DEDUP_WINDOW_DAYS, with their keys
and subject links, and keep webhook_events' months (webhooks/partitions.py).

Hourly, and apart from purge_retention, because at scale it is the biggest delete
Sluice does: every delivery's key goes again one day. A run stops at its soft time
limit, and the next resumes where it stopped, so the hour is its budget (bench/scale
measures its rate; docs/capacity.md the delivery rate that keeps it busy).
"""
from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import MetaData, and_, delete, exists, func, or_, select
from sqlalchemy.exc import DBAPIError

from cron.runner import JobContext, in_batches
from store import subjects
from store.db import utcnow
from store.holds import held_subjects
from webhooks import partitions
from webhooks.models import DEAD, FAILED, PROCESSED, RECEIVED, WebhookEvent, WebhookEventKey
from webhooks.processing import link_pending

log = logging.getLogger(__name__)

MONTH_BATCH = 10_000  # ids whose keys and links go in one transaction, a month dropped


def expire_webhook_events(ctx: JobContext) -> dict:
    now, window = utcnow(), ctx.config["DEDUP_WINDOW_DAYS"]
    try:
        added, refused = partitions.add_ahead(ctx.session.connection(), now,
                                              ctx.config["EVENT_PARTITION_SPAN"]), None
        ctx.session.commit()
    except DBAPIError as error:  # the DEFAULT partition holds rows of that range
        ctx.session.rollback()
        added, refused = [], type(error.orig).__name__
    if window and ctx.session.scalar(select(held_subjects().exists())):
        link_pending(ctx.session)  # a held person's unlinked (dead) events are found too
        ctx.session.commit()
    deleted = _expired_events(ctx, now - dt.timedelta(days=window)) if window else 0
    detail = {"webhook_events_deleted": deleted, "webhook_months_added": len(added)}
    if refused:  # the deleting above is what clears the way; its run says what failed
        log.error("expire_webhook_events: partitions ahead not added (%s): rows in %s "
                  "fall in their range", refused, partitions.DEFAULT)
        detail["webhook_months_refused"] = refused
    return detail


def _expired_events(ctx: JobContext, before: dt.datetime) -> int:
    """Delete the rows of finished deliveries received before `before` (the dedup
    window), with their keys and subject links; a repeat of one of their keys is then
    stored as new. Work still owed (received, failed) stays, and so does a row naming
    someone a legal hold covers.

    On PostgreSQL the table is partitioned by month (webhooks/partitions.py): a
    month wholly before `before` is dropped whole once none of its rows must stay,
    its keys and links deleted first; a month with such rows has the others deleted
    row by row. A row is therefore kept up to a month past the window. Rows in the
    DEFAULT partition (no month covered them), and SQLite's, are deleted row by row,
    batched by the (status, received_at) index, so each run's cost follows the rows
    it removes, not the table's size."""
    connection = ctx.session.connection()
    parts = partitions.months(connection)
    if not parts:
        return _finished_rows(ctx, WebhookEvent.__table__, WebhookEvent.received_at < before)
    removed = 0
    for part in parts:
        if part.default:
            default = WebhookEvent.__table__.to_metadata(MetaData(), name=part.name)
            removed += _finished_rows(ctx, default, default.c.received_at < before)
        elif part.upper <= before:
            in_month = WebhookEvent.received_at < part.upper
            if part.lower is not None:
                in_month = and_(WebhookEvent.received_at >= part.lower, in_month)
            if ctx.session.scalar(select(exists().where(in_month, _must_stay()))):
                removed += _finished_rows(ctx, WebhookEvent.__table__, in_month)
            else:
                removed += _drop_month(ctx, part, in_month)
    return removed


def _must_stay():
    """A row retention keeps whatever its age: work owed, or naming someone held."""
    return or_(WebhookEvent.status.in_((RECEIVED, FAILED)), WebhookEvent.id.in_(
        subjects.linked(subjects.WEBHOOK_EVENT, held_subjects())))


def _forget(ctx: JobContext, ids) -> None:
    """Delete what points at these events (ids, a list or a subquery): their keys
    and subject links."""
    subjects.unlink(ctx.session, subjects.WEBHOOK_EVENT, ids)
    ctx.session.execute(delete(WebhookEventKey).where(WebhookEventKey.event_id.in_(ids)))


def _finished_rows(ctx: JobContext, table, which) -> int:
    def delete_rows(ids: list[int]):
        _forget(ctx, ids)
        return delete(table).where(table.c.id.in_(ids))
    return in_batches(ctx, lambda: select(table.c.id).where(
        which, table.c.status.in_((PROCESSED, DEAD)),
        table.c.id.not_in(subjects.linked(subjects.WEBHOOK_EVENT, held_subjects()))),
        delete_rows)


def _drop_month(ctx: JobContext, part: partitions.Partition, in_month) -> int:
    """Forget a month's rows a range of MONTH_BATCH ids at a time, then drop it in one
    statement. Each batch is three statements over a range of the month's primary
    key, sent as a subquery, not as a list of ids: bench/scale measured the list
    (10,000 bound parameters) at a quarter of the rate, 25,700 against 105,000 rows/s."""
    after, total = 0, 0
    while True:
        ctx.check()
        batch = (select(WebhookEvent.id).where(in_month, WebhookEvent.id > after)
                 .order_by(WebhookEvent.id).limit(MONTH_BATCH).subquery())
        last, count = ctx.session.execute(select(func.max(batch.c.id), func.count())).one()
        if not count:
            break
        ids = select(WebhookEvent.id).where(in_month, WebhookEvent.id > after,
                                            WebhookEvent.id <= last)
        _forget(ctx, ids)
        ctx.session.commit()
        after, total = last, total + count
    try:
        partitions.drop(ctx.session.connection(), part.name)
        ctx.session.commit()
    except DBAPIError as error:  # its lock not had in 2 s, or work owed since: next run
        ctx.session.rollback()
        log.warning("retention: month %s not dropped this run: %s", part.name,
                    type(error.orig).__name__)
        return 0
    return total
