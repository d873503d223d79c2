"""Who a stored record is about: data subjects, found by blind index, never by value.

A webhook body names people (a payment's customer email, a WhatsApp sender's phone).
When the worker processes a delivery it reads the identifiers out of the payload and
links the body to their blind indexes (store/sealing.py) in the same transaction, so
erasure (privacy/erasure.py) and the console find a person's records through the
index without ever searching plaintext, and a legal hold on a person keeps their
bodies from retention.

What counts as an identifier is read from the payload's shape, the same for every
provider: any string that is an email address; the value of a key that names a phone
(`phone`, `msisdn`, `wa_id`, `from`, ...); the value of a key that names a customer
(`customer`, `customer_id`, `customer_code`). A provider's format with another field
for them adds its key here.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

from sqlalchemy import BigInteger, Index, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from store.db import Base, BigIntId, insert_ignoring
from store.sealing import blind_index, normal_phone

WEBHOOK_EVENT = "webhook_event"

PHONE_KEYS = frozenset({"phone", "phone_number", "phonenumber", "mobile", "msisdn", "wa_id",
                        "from", "to", "waid", "recipient_id"})
CUSTOMER_KEYS = frozenset({"customer", "customer_id", "customer_code"})
EMAIL = re.compile(r"[^@\s<>\"',;:]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+")
# E.164 allows up to 15 digits; fewer than 7 is a short code or an amount, not a person
PHONE_DIGITS = range(7, 16)
MAX_SUBJECTS = 50          # a body naming more is a batch report: the first fifty
MAX_DEPTH = 20


class SubjectLink(Base):
    """One record about one subject: (blind index, kind of record, its id)."""
    __tablename__ = "subject_links"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    subject_index: Mapped[str] = mapped_column(String(64))
    record_kind: Mapped[str] = mapped_column(String(32))
    record_id: Mapped[int] = mapped_column(BigInteger())

    __table_args__ = (Index("ix_subject_links_subject_index", "subject_index"),
                      Index("ux_subject_links_record", "record_kind", "record_id",
                            "subject_index", unique=True))


def identifiers(payload: Any) -> set[tuple[str, str]]:
    """{(kind, value)}: the phones, emails and customer ids a parsed payload names."""
    found: set[tuple[str, str]] = set()
    _walk(payload, None, found, 0)
    return found


def _walk(value: Any, key: str | None, found: set, depth: int) -> None:
    if depth > MAX_DEPTH or len(found) >= MAX_SUBJECTS:
        return
    if isinstance(value, dict):
        for name, item in value.items():
            _walk(item, str(name).lower(), found, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _walk(item, key, found, depth + 1)
    elif isinstance(value, (str, int)) and not isinstance(value, bool):
        text = str(value)
        if key in PHONE_KEYS and len(normal_phone(text)) in PHONE_DIGITS \
                and not EMAIL.search(text):
            found.add(("phone", text))
        elif key in CUSTOMER_KEYS and isinstance(value, str) and 0 < len(text) <= 255:
            found.add(("customer", text))
        if isinstance(value, str):
            found.update(("email", match) for match in EMAIL.findall(text)[:MAX_SUBJECTS])


def indexes(payload: Any) -> set[str]:
    """The blind indexes of everyone a parsed payload names."""
    found = set()
    for kind, value in identifiers(payload):
        try:
            index = blind_index(kind, value)
        except UnicodeEncodeError:  # a lone surrogate: no one's identifier
            continue
        if index is not None:
            found.add(index)
    return found


def link(session: Session, record_kind: str, record_id: int, subject_indexes: Iterable[str]
         ) -> None:
    """Record that the record is about these subjects, in the caller's transaction;
    linking it again (a replay) adds nothing."""
    rows = [{"subject_index": index, "record_kind": record_kind, "record_id": record_id}
            for index in sorted(set(subject_indexes))]
    if rows:
        session.execute(insert_ignoring(session.get_bind().dialect.name,
                                        SubjectLink.__table__,
                                        ("record_kind", "record_id", "subject_index")), rows)


def linked(record_kind: str, subject_index):
    """The ids of the records of `record_kind` linked to `subject_index` (a value or a
    subquery of indexes), as a subquery."""
    condition = (SubjectLink.subject_index.in_(subject_index)
                 if not isinstance(subject_index, str)
                 else SubjectLink.subject_index == subject_index)
    return select(SubjectLink.record_id).where(SubjectLink.record_kind == record_kind,
                                               condition)


def unlink(session: Session, record_kind: str, record_ids) -> None:
    """Forget the links of records that no longer hold anything about anyone: their
    ids, a list or a subquery."""
    if not isinstance(record_ids, list) or record_ids:
        session.execute(delete(SubjectLink).where(SubjectLink.record_kind == record_kind,
                                                  SubjectLink.record_id.in_(record_ids)))


PERSONAL_KEYS = frozenset({"from", "to", "text", "phone", "email", "name", "caption",
                           "body", "filename", "customer_email", "receipt_email"})
ERASED = "[erased]"


def scrub(data: Any) -> Any:
    """`data` with every personal field and every email address replaced by "[erased]":
    what an event about an erased person keeps (ids, statuses, amounts, times)."""
    if isinstance(data, dict):
        return {name: (ERASED if str(name).lower() in PERSONAL_KEYS and item is not None
                       else scrub(item)) for name, item in data.items()}
    if isinstance(data, list):
        return [scrub(item) for item in data]
    if isinstance(data, str) and EMAIL.search(data):
        return ERASED
    return data
