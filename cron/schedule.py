"""The Celery beat schedule, built from the job registry and config."""
from __future__ import annotations

import datetime as dt
from typing import Any

from cron.jobs import registry

RUN_JOB_TASK = "sluice.cron.run_job"


def build_beat_schedule(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    schedule = {}
    for job in registry(config).values():
        schedule[job.name.replace("_", "-")] = {
            "task": RUN_JOB_TASK,
            "schedule": dt.timedelta(seconds=job.interval),
            "kwargs": {"name": job.name, "trigger": "beat"},
            # A run that waited longer than its interval is stale: drop it, the
            # next one is coming. Limits are per job, not the worker default.
            "options": {"queue": "cron", "expires": max(job.interval - 1, 1),
                        "soft_time_limit": job.soft_time_limit,
                        "time_limit": job.time_limit},
        }
    return schedule
