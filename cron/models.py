"""Job run history: every run, skips included."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from store.db import Base, BigIntId, JSONType, UTCDateTime, utcnow

RUNNING, SUCCEEDED, FAILED, SKIPPED_LOCKED, TIMED_OUT = (
    "running", "succeeded", "failed", "skipped_locked", "timed_out")


class JobRun(Base):
    __tablename__ = "job_runs"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    job: Mapped[str] = mapped_column(String(100))
    trigger: Mapped[str] = mapped_column(String(20))          # beat | manual
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str] = mapped_column(String(20), default=RUNNING)
    duration: Mapped[float | None] = mapped_column(Float())   # seconds
    fence: Mapped[int | None] = mapped_column(BigInteger())
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer())
    detail: Mapped[dict] = mapped_column(JSONType, default=dict)
    error: Mapped[str | None] = mapped_column(String(1000))

    __table_args__ = (Index("ix_job_runs_job_started_at", "job", "started_at"),)
