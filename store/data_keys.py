"""Which data keys have ever sealed values here, so that dropping one too early is
refused at start (store/sealing.py seals; `flask keys` rotates).

Every process records the ids in its DATA_KEYS when it starts. If a recorded id is no
longer listed, its values cannot be opened any more: the start counts them (a scan of
the sealed columns, done only then) and refuses, naming the key and the count, until
the key is listed again and `flask keys rotate` has moved its values. A dropped key
with no values left is simply forgotten.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import String, delete, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from store.db import Base, UTCDateTime, insert_ignoring, utcnow
from store.sealing import PREFIX, KeyRing, SealedBytes, raw_column, sealed_columns


class KnownKey(Base):
    __tablename__ = "data_keys"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


def values_under(session: Session, metadata, key_id: str) -> int:
    """How many stored values are sealed under `key_id`, over every sealed column."""
    total = 0
    for _table, column in sealed_columns(metadata):
        prefix = f"{PREFIX}{key_id}:"
        raw = raw_column(column)
        wanted = prefix.encode("ascii") if isinstance(column.type, SealedBytes) else prefix
        total += session.scalar(select(func.count()).where(
            func.substr(raw, 1, len(prefix)) == wanted)) or 0
    return total


def dropped_in_use(session: Session, metadata, ring: KeyRing) -> dict[str, int]:
    """Record this ring's key ids; {dropped key id: values still under it} for every
    recorded key no longer in the ring that still has values (those with none are
    forgotten). The caller commits."""
    session.execute(insert_ignoring(session.get_bind().dialect.name, KnownKey.__table__,
                                    ("key_id",)),
                    [{"key_id": key_id, "first_seen_at": utcnow()} for key_id in ring.ids])
    dropped = list(session.scalars(select(KnownKey.key_id).where(
        KnownKey.key_id.not_in(ring.ids))))
    in_use = {key_id: values_under(session, metadata, key_id) for key_id in dropped}
    gone = [key_id for key_id, count in in_use.items() if not count]
    if gone:
        session.execute(delete(KnownKey).where(KnownKey.key_id.in_(gone)))
    return {key_id: count for key_id, count in in_use.items() if count}
