"""The Celery beat schedule, built from the job registry and config.

Each job runs every `interval` seconds, unless CRON_SCHEDULES gives it a crontab:
"purge_retention=0 3 * * *; reconcile_payments=*/5 * * * *" (minute hour
day-of-month month day-of-week, UTC).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from celery.schedules import crontab

from cron.jobs import registry
from store.task_names import RUN_JOB

CRONTAB_EXPIRES = 300  # seconds a crontab run may wait in the queue before it is stale


class ScheduleError(ValueError):
    pass


def parse_crontabs(text: str, known: set[str]) -> dict[str, crontab]:
    schedules = {}
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        name, _, spec = entry.partition("=")
        name, fields = name.strip(), spec.split()
        if name not in known:
            raise ScheduleError(f"CRON_SCHEDULES names an unknown job: {name!r}")
        if len(fields) != 5:
            raise ScheduleError(f"CRON_SCHEDULES[{name}]: give five crontab fields")
        try:
            schedules[name] = crontab(*fields)
        except ValueError as exc:
            raise ScheduleError(f"CRON_SCHEDULES[{name}]: {exc}") from None
    return schedules


def build_beat_schedule(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    jobs = registry(config)
    crontabs = parse_crontabs(config.get("CRON_SCHEDULES", ""), set(jobs))
    schedule = {}
    for job in jobs.values():
        when = crontabs.get(job.name) or dt.timedelta(seconds=job.interval)
        # A run that waited longer than its interval is stale: drop it, the next
        # one is coming. Limits are per job, not the worker default.
        expires = CRONTAB_EXPIRES if job.name in crontabs else max(job.interval - 1, 1)
        schedule[job.name.replace("_", "-")] = {
            "task": RUN_JOB,
            "schedule": when,
            "kwargs": {"name": job.name, "trigger": "beat"},
            "options": {"queue": "cron", "expires": expires,
                        "soft_time_limit": job.soft_time_limit,
                        "time_limit": job.time_limit},
        }
    return schedule
