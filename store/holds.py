"""Legal holds: what the law says must be kept stays, whatever its owner, retention or an
erasure would otherwise do.

A hold covers one document, everything of one owner (an API client), or one data
subject, named by the blind index of their phone, email or customer id
(store/sealing.py), never by the value. Deleting what a hold covers is refused;
retention passes it by. Releasing a hold keeps its row (released_at): when it held,
and who said so, stay on record, as the audit log's entries do.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import unicodedata

from sqlalchemy import BigInteger, Index, Integer, String, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from store import audit
from store.db import Base, BigIntId, UTCDateTime, utcnow
from store.sealing import NORMAL_FORMS, blind_index

DOCUMENT, OWNER, SUBJECT = "document", "owner", "subject"
SCOPES = (DOCUMENT, OWNER, SUBJECT)
SUBJECT_KINDS = tuple(NORMAL_FORMS)  # phone, email, customer


class Hold(Base):
    __tablename__ = "legal_holds"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))
    document_id: Mapped[int | None] = mapped_column(BigInteger())
    owner_id: Mapped[int | None] = mapped_column(Integer())
    subject_kind: Mapped[str | None] = mapped_column(String(16))
    subject_index: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(500))
    placed_by: Mapped[str] = mapped_column(String(100))
    placed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    released_by: Mapped[str | None] = mapped_column(String(100))
    released_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_legal_holds_released_at_scope", "released_at", "scope"),)


class InvalidHold(ValueError):
    pass


class HoldNotFound(LookupError):
    pass


@dataclasses.dataclass(frozen=True)
class Target:
    """What a hold is to cover: exactly one of the three."""

    document_id: int | None = None
    owner_id: int | None = None
    subject_kind: str | None = None
    subject_value: str | None = dataclasses.field(default=None, repr=False)


def plain_text(value) -> bool:
    """Text a column can hold: no NUL (PostgreSQL refuses it in text) and no lone
    surrogate (no UTF-8 column can hold one), as OpenAPI's patterns for these fields say.
    Other invisible characters are stored as sent; the console shows them as code points."""
    return isinstance(value, str) and "\x00" not in value and not any(
        unicodedata.category(char) == "Cs" for char in value)


def subject_index(kind, value) -> str | None:
    """The blind index of the person `value` names as a `kind` (SUBJECT_KINDS), or None
    if it names no one (no digit in a phone, a blank email, not plain text, past 320
    characters): what a hold and an erasure (privacy/erasure.py) know a person by."""
    if kind not in SUBJECT_KINDS or not plain_text(value) or len(value) > 320:
        return None
    return blind_index(kind, value)


def checked_reason(reason) -> str:
    """Why, in 1 to 500 characters of plain text; InvalidHold otherwise."""
    if not plain_text(reason) or not 1 <= len(reason.strip()) <= 500:
        raise InvalidHold("reason: say why, in 1 to 500 characters (no NUL)")
    return reason.strip()


def place(session: Session, target: Target, reason: str, actor: str) -> Hold:
    """Place a hold, audited (a subject by its blind index only); the caller commits."""
    reason = checked_reason(reason)
    given = [name for name in ("document_id", "owner_id", "subject_kind")
             if getattr(target, name) is not None]
    if len(given) != 1:
        raise InvalidHold("a hold covers exactly one of: a document, an owner, a subject")
    hold = Hold(reason=reason, placed_by=actor, placed_at=utcnow())
    if target.document_id is not None:
        hold.scope, hold.document_id = DOCUMENT, target.document_id
    elif target.owner_id is not None:
        hold.scope, hold.owner_id = OWNER, target.owner_id
    else:
        index = subject_index(target.subject_kind, target.subject_value)
        if index is None:
            raise InvalidHold(f"a subject is one of {', '.join(SUBJECT_KINDS)}, with a value")
        hold.scope, hold.subject_kind, hold.subject_index = SUBJECT, target.subject_kind, index
    session.add(hold)
    session.flush()
    audit.record(session, actor, "hold.place", "legal_hold", hold.id,
                 {"scope": hold.scope, "document_id": hold.document_id,
                  "owner_id": hold.owner_id, "subject_index": hold.subject_index})
    return hold


def release(session: Session, hold_id: int, actor: str) -> Hold:
    """Release an active hold, audited; the caller commits. HoldNotFound otherwise."""
    hold = session.scalar(select(Hold).where(Hold.id == hold_id, Hold.released_at.is_(None))
                          .with_for_update())
    if hold is None:
        raise HoldNotFound(hold_id)
    hold.released_at, hold.released_by = utcnow(), actor
    audit.record(session, actor, "hold.release", "legal_hold", hold.id, {"scope": hold.scope})
    return hold


def holds(session: Session, include_released: bool = False, limit: int = 200) -> list[Hold]:
    query = select(Hold).order_by(Hold.id.desc()).limit(limit)
    if not include_released:
        query = query.where(Hold.released_at.is_(None))
    return list(session.scalars(query))


def _active():
    return Hold.released_at.is_(None)


def documents_held(document_id_column, owner_id_column):
    """A condition true of documents an active hold covers (their id, or their owner),
    to exclude them from a sweep or to find them."""
    return or_(
        document_id_column.in_(select(Hold.document_id).where(_active(),
                                                              Hold.scope == DOCUMENT)),
        owner_id_column.in_(select(Hold.owner_id).where(_active(), Hold.scope == OWNER)))


def held_subjects():
    """The blind indexes active holds cover, as a subquery."""
    return select(Hold.subject_index).where(_active(), Hold.scope == SUBJECT)
