"""reconcile_payments: ask providers about payments stuck in `pending`."""
from __future__ import annotations

import datetime as dt
import logging

import pybreaker
from sqlalchemy import select

from cron.runner import JobContext
from payments.ledger import PENDING, Payment, apply_update
from payments.status_api import (
    PaymentUnknown,
    ProviderStatusClient,
    ProviderUnavailable,
    status_clients,
)
from store.db import utcnow

log = logging.getLogger(__name__)


def reconcile(ctx: JobContext) -> dict:
    return reconcile_payments(ctx, status_clients(ctx.config, ctx.redis))


def reconcile_payments(ctx: JobContext, clients: dict[str, ProviderStatusClient]) -> dict:
    cutoff = utcnow() - dt.timedelta(seconds=ctx.config["RECONCILE_AFTER"])
    counts = {"checked": 0, "updated": 0, "unknown": 0, "errors": 0, "circuit_open": 0}
    payments = ctx.session.execute(
        select(Payment.provider, Payment.reference)
        .where(Payment.status == PENDING, Payment.updated_at < cutoff,
               Payment.provider.in_(list(clients)))
        .order_by(Payment.updated_at).limit(ctx.config["RECONCILE_BATCH"])).all()
    ctx.session.rollback()  # hold no transaction open while we wait on HTTP
    open_circuits: set[str] = set()
    for provider, reference in payments:
        ctx.check()
        if provider in open_circuits:
            counts["circuit_open"] += 1
            continue
        counts["checked"] += 1
        try:
            update = clients[provider].status(reference)
        except pybreaker.CircuitBreakerError:
            open_circuits.add(provider)
            counts["circuit_open"] += 1
            log.warning("provider circuit open; skipping it this run",
                        extra={"provider": provider})
            continue
        except PaymentUnknown:
            counts["unknown"] += 1
            continue
        except ProviderUnavailable as exc:
            counts["errors"] += 1
            log.warning("provider status check failed",
                        extra={"provider": provider, "error": str(exc)})
            continue
        if update is not None and apply_update(ctx.session, update):
            counts["updated"] += 1
        ctx.session.commit()
    return counts
