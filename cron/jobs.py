"""Every scheduled job. Adding one is a module in cron/ and one `Job(...)` line below.

A job's function is named by its import path and imported when the job first runs:
the web process builds this registry (the admin API, `flask cron list`) but never
runs a job, and must not load what the jobs need (HTTP clients, clamd).
"""
from __future__ import annotations

from typing import Any, Mapping

from cron.runner import Job


def registry(config: Mapping[str, Any]) -> dict[str, Job]:
    """Every job with its interval and limits; CRON_DISABLED (comma list) turns some off."""
    relay_every = config["OUTBOX_RELAY_INTERVAL"]
    jobs = [
        Job("relay_outbox", "cron.relay:relay_outbox", interval=relay_every,
            soft_time_limit=max(relay_every * 3, 30), time_limit=max(relay_every * 3, 30) + 15),
        Job("dispatch_deliveries", "cron.dispatch:dispatch_deliveries", interval=60,
            soft_time_limit=120, time_limit=150),
        Job("redrive_stuck_work", "cron.redrive:redrive_stuck_work",
            interval=config["REDRIVE_INTERVAL"], soft_time_limit=120, time_limit=150),
        Job("reconcile_payments", "cron.reconcile:reconcile",
            interval=config["RECONCILE_INTERVAL"], soft_time_limit=240, time_limit=280),
        Job("rescan_documents", "cron.rescan:rescan_documents",
            interval=config["RESCAN_INTERVAL"], soft_time_limit=600, time_limit=660),
        Job("purge_retention", "cron.retention:purge_retention", interval=24 * 3600,
            soft_time_limit=1200, time_limit=1260),
        Job("expire_webhook_events", "cron.event_expiry:expire_webhook_events", interval=3600,
            soft_time_limit=3000, time_limit=3060),
        Job("verify_storage", "cron.verify_storage:verify_storage",
            interval=config["STORAGE_VERIFY_INTERVAL"], soft_time_limit=600, time_limit=660),
        Job("rotate_data_keys", "cron.rotate_keys:rotate_data_keys", interval=3600,
            soft_time_limit=1200, time_limit=1260),
    ]
    disabled = {name.strip() for name in config.get("CRON_DISABLED", "").split(",")}
    return {job.name: job for job in jobs if job.name not in disabled}
