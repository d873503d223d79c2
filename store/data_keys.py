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

from sqlalchemy import String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from store.db import Base, UTCDateTime, insert_ignoring, utcnow
from store.sealing import KeyRing, key_counts


class KnownKey(Base):
    __tablename__ = "data_keys"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


def dropped_in_use(session: Session, metadata, ring: KeyRing) -> dict[str, int]:
    """Record this ring's key ids; {dropped key id: values still under it} for every
    recorded key no longer in the ring that still has values (those with none are
    forgotten). The caller commits."""
    session.execute(insert_ignoring(session.get_bind().dialect.name, KnownKey.__table__,
                                    ("key_id",)),
                    [{"key_id": key_id, "first_seen_at": utcnow()} for key_id in ring.ids])
    dropped = list(session.scalars(select(KnownKey.key_id).where(
        KnownKey.key_id.not_in(ring.ids))))
    counts = key_counts(session, metadata) if dropped else {}  # the scan: only then
    in_use = {key_id: sum(found.get(key_id, 0) for found in counts.values())
              for key_id in dropped}
    gone = [key_id for key_id, count in in_use.items() if not count]
    if gone:
        session.execute(delete(KnownKey).where(KnownKey.key_id.in_(gone)))
    return {key_id: count for key_id, count in in_use.items() if count}
