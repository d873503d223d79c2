"""reconcile_payments: ask providers about payments stuck in `pending`."""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pybreaker
import redis
from sqlalchemy import select

from cron.provider_api import (ProviderStatusClient, ProviderUnavailable, PaymentUnknown,
                               breaker, http_session)
from cron.runner import JobContext
from webhooks.db import utcnow
from webhooks.payments import PENDING, Payment, apply_update

log = logging.getLogger(__name__)

PROVIDERS = {"stripe": ("STRIPE_API_BASE", "STRIPE_API_KEY"),
             "paystack": ("PAYSTACK_API_BASE", "PAYSTACK_SECRET_KEY")}


def status_clients(config: dict[str, Any], client: redis.Redis) -> dict[str, ProviderStatusClient]:
    """One client per provider that has an API key configured."""
    session = http_session(config["RECONCILE_HTTP_RETRIES"], config["RECONCILE_HTTP_BACKOFF"])
    timeout = (config["RECONCILE_CONNECT_TIMEOUT"], config["RECONCILE_READ_TIMEOUT"])
    clients = {}
    for provider, (base_key, secret_key) in PROVIDERS.items():
        if config.get(secret_key):
            circuit = breaker(client, provider, failures=config["RECONCILE_BREAKER_FAILURES"],
                              reset_after=config["RECONCILE_BREAKER_RESET"],
                              prefix=config["REDIS_KEY_PREFIX"])
            clients[provider] = ProviderStatusClient(provider, config[base_key],
                                                     config[secret_key], session, circuit,
                                                     timeout)
    return clients


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
