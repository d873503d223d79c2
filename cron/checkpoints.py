"""Fenced writes: a run may only overwrite state written by an older (smaller) fence."""
from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from cron.models import JobCheckpoint
from webhooks.db import insert_unless_exists, utcnow


def read_checkpoint(session: Session, job: str) -> dict:
    row = session.get(JobCheckpoint, job)
    return dict(row.data) if row else {}


def write_checkpoint(session: Session, job: str, fence: int, data: dict) -> bool:
    """Store `data` for `job` unless a newer lock holder already has; True if written."""
    updated = session.execute(
        update(JobCheckpoint)
        .where(JobCheckpoint.job == job, JobCheckpoint.fence <= fence)
        .values(fence=fence, data=data, updated_at=utcnow())).rowcount
    if updated:
        return True
    # No row yet: create it, unless a concurrent run just did (then it wins).
    values = {"job": job, "fence": fence, "data": data, "updated_at": utcnow()}
    return insert_unless_exists(session, JobCheckpoint, values, ["job"], key="job") is not None
