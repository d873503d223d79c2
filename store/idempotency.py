"""Idempotency keys: a client's first answer to a state-changing request, kept so that
the same request sent again with the same key gets that answer and changes nothing.

A key is claimed before its request runs, in a transaction of its own, by an INSERT
the UNIQUE (client_id, key) constraint decides: of two requests racing with one key,
exactly one runs. The claim is then either finished with the answer or released
(an error that a retry should run again). HTTP is webapp/idempotency.py's; this is the
row and its life.
"""
from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import Index, Integer, String, delete, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from store.db import Base, BigIntId, UTCDateTime, insert_unless_exists, utcnow
from store.sealing import SealedBytes

# A claim not finished in this long belongs to a request that died (a killed worker
# process, a lost database connection): a retry may take the key over. No request of
# ours runs this long once its body is in (the claim is taken after the upload spool).
RUNNING_LEASE = dt.timedelta(minutes=2)


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    client_id: Mapped[int] = mapped_column(Integer())
    key: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(500))
    # SHA-256 over the method, the path, the body and the headers that change a request
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # None while the first request runs
    response_status: Mapped[int | None] = mapped_column(Integer())
    # the answer, sealed at rest like every other secret and personal datum
    # (store/sealing.py): a destination's creation answers with its signing secret
    response: Mapped[bytes | None] = mapped_column(SealedBytes())

    __table_args__ = (
        Index("uq_idempotency_keys_client_id", "client_id", "key", unique=True),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )


@dataclasses.dataclass(frozen=True)
class Claimed:
    """The key is this request's: run it, then finish or release the claim."""

    id: int


@dataclasses.dataclass(frozen=True)
class Held:
    """Another request holds the key: running (status None) or finished."""

    method: str
    path: str
    fingerprint: str
    response_status: int | None
    response: bytes | None


def claim(session: Session, client_id: int, key: str, method: str, path: str,
          fingerprint: str, keep_for: dt.timedelta) -> Claimed | Held:
    """Claim `key` for this request, and commit the claim; or say who holds it.

    An expired key, or a claim past RUNNING_LEASE, is taken over in place by a
    conditional UPDATE, which two racing requests cannot both win.
    """
    now = utcnow()
    fields = {"method": method, "path": path, "fingerprint": fingerprint,
              "created_at": now, "expires_at": now + keep_for,
              "response_status": None, "response": None}
    new_id = insert_unless_exists(session, IdempotencyKey,
                                  {"client_id": client_id, "key": key, **fields},
                                  unique=["client_id", "key"])
    if new_id is None:
        row = session.scalar(select(IdempotencyKey).where(
            IdempotencyKey.client_id == client_id, IdempotencyKey.key == key))
        if row is None:  # purged between the INSERT and this SELECT: run as new
            session.rollback()
            return claim(session, client_id, key, method, path, fingerprint, keep_for)
        taken = session.execute(update(IdempotencyKey).where(
            IdempotencyKey.id == row.id,
            or_(IdempotencyKey.expires_at < now,
                (IdempotencyKey.response_status.is_(None))
                & (IdempotencyKey.created_at < now - RUNNING_LEASE)))
            .values(**fields).execution_options(synchronize_session=False)).rowcount
        if not taken:
            held = Held(row.method, row.path, row.fingerprint, row.response_status,
                        row.response)
            session.rollback()
            return held
        new_id = row.id
    session.commit()
    return Claimed(new_id)


def finish(session: Session, claimed: Claimed, status: int, response: bytes) -> None:
    """Keep the answer for the key's retries; commits."""
    session.execute(update(IdempotencyKey).where(IdempotencyKey.id == claimed.id)
                    .values(response_status=status, response=response)
                    .execution_options(synchronize_session=False))
    session.commit()


def release(session: Session, claimed: Claimed) -> None:
    """Forget the claim: the request ended without an answer worth repeating; commits."""
    session.rollback()  # whatever the failed request left unfinished
    session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == claimed.id,
                                                 IdempotencyKey.response_status.is_(None)))
    session.commit()


def expired_ids(now: dt.datetime):
    """The retention job's query: keys past their IDEMPOTENCY_KEY_HOURS."""
    return select(IdempotencyKey.id).where(IdempotencyKey.expires_at < now)


def delete_ids(ids: list[int]):
    return delete(IdempotencyKey).where(IdempotencyKey.id.in_(ids))
