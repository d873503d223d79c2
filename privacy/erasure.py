"""Erase everything Sluice holds about one person, named by phone, email or customer id.

The person is found by blind index only (store/sealing.py): their WhatsApp messages
carry one, the events about them carry one, and the webhook bodies that name them are
linked to it (store/subjects.py). Erasing:

- drops the webhook bodies that name them (the row, its event key and status stay, so
  a redelivery is still recognised as one);
- redacts their messages' texts and phone numbers, and the names of their media;
- deletes the documents their media became, with the bytes unless another document
  needs them (documents/deletion.py);
- scrubs the personal fields of the events about them, and what destinations answered
  to those events.

What the business must keep stays: payments (reference, amount, currency, status and
times: no personal field), statuses, ids, event keys, and the audit entry, which
names the subject by blind index only. A legal hold (store/holds.py) keeps what it
covers, and the answer says which hold kept what. An erasure touches only what exists
when it runs: a person who writes again later is a new record.
"""
from __future__ import annotations

import dataclasses
import logging

from sqlalchemy import and_, not_, or_, select, update
from sqlalchemy.orm import Session

from deliveries.models import Delivery, DeliveryAttempt
from documents.deletion import delete_documents, release_blobs
from documents.models import Document
from documents.storage import BlobStorage
from store import audit, subjects
from store.db import fold_sqlite_wal
from store.events import Event
from store.holds import (
    DOCUMENT,
    OWNER,
    SUBJECT,
    SUBJECT_KINDS,
    Hold,
    held_subjects,
    subject_index,
)
from webhooks.models import WebhookEvent
from webhooks.processing import link_pending
from whatsapp.models import WhatsAppMedia, WhatsAppMessage

log = logging.getLogger(__name__)

KINDS = ("webhook_bodies", "messages", "media_documents", "events", "deliveries")


class InvalidSubject(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Subject:
    """A person as erasure knows them: the kind of identifier, and its blind index."""
    kind: str                                              # phone, email, customer
    index: str


def subject(kind: str, value) -> Subject:
    """The person named by `value` (a phone in any spelling, an email, a customer id);
    InvalidSubject if it names no one. The value itself goes no further."""
    index = subject_index(kind, value)
    if index is None:
        raise InvalidSubject(f"a subject is one of {', '.join(SUBJECT_KINDS)}, with a "
                             "value of 1 to 320 characters")
    return Subject(kind, index)


@dataclasses.dataclass
class Found:
    """The ids of what is held about a subject, and of what holds keep of it."""
    webhook_bodies: list[int] = dataclasses.field(default_factory=list)
    messages: list[int] = dataclasses.field(default_factory=list)
    media_documents: list[int] = dataclasses.field(default_factory=list)
    events: list[int] = dataclasses.field(default_factory=list)
    deliveries: list[int] = dataclasses.field(default_factory=list)   # attempts' ids
    kept: dict[str, list[int]] = dataclasses.field(
        default_factory=lambda: {kind: [] for kind in KINDS})
    holds: list[Hold] = dataclasses.field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {kind: len(getattr(self, kind)) for kind in KINDS}


def find(session: Session, index: str) -> Found:
    """What Sluice holds about the subject with blind index `index`, split into what an
    erasure would remove and what legal holds keep (pending bodies linked first)."""
    link_pending(session)
    found = Found()
    active = Hold.released_at.is_(None)
    subject_hold = list(session.scalars(select(Hold).where(
        active, Hold.scope == SUBJECT, Hold.subject_index == index)))
    body_ids = list(session.scalars(select(WebhookEvent.id).where(
        WebhookEvent.id.in_(subjects.linked(subjects.WEBHOOK_EVENT, index)),
        WebhookEvent.body.is_not(None)).order_by(WebhookEvent.id)))
    # a body that also names someone a hold covers stays, for that hold
    shared = dict(session.execute(
        select(subjects.SubjectLink.record_id, subjects.SubjectLink.subject_index).where(
            subjects.SubjectLink.record_kind == subjects.WEBHOOK_EVENT,
            subjects.SubjectLink.record_id.in_(body_ids),
            subjects.SubjectLink.subject_index != index,
            subjects.SubjectLink.subject_index.in_(held_subjects()))).all())
    other_holds = list(session.scalars(select(Hold).where(
        active, Hold.scope == SUBJECT, Hold.subject_index.in_(set(shared.values())))))
    message_ids = list(session.scalars(select(WhatsAppMessage.id).where(
        WhatsAppMessage.phone_index == index).order_by(WhatsAppMessage.id)))
    # the subject's media documents, unless a message of someone else's brought the
    # same document too
    theirs = select(WhatsAppMedia.document_id).where(
        WhatsAppMedia.message_id.in_(message_ids), WhatsAppMedia.document_id.is_not(None))
    others = select(WhatsAppMedia.document_id).where(
        WhatsAppMedia.document_id.is_not(None), not_(WhatsAppMedia.message_id.in_(message_ids)))
    documents = session.execute(select(Document.id, Document.owner_id).where(
        Document.id.in_(theirs), Document.id.not_in(others)).order_by(Document.id)).all()
    document_holds = list(session.scalars(select(Hold).where(active, or_(
        and_(Hold.scope == DOCUMENT, Hold.document_id.in_([d for d, _ in documents])),
        and_(Hold.scope == OWNER, Hold.owner_id.in_({o for _, o in documents}))))))
    held_documents = {hold.document_id for hold in document_holds if hold.scope == DOCUMENT}
    held_owners = {hold.owner_id for hold in document_holds if hold.scope == OWNER}
    event_ids = list(session.scalars(select(Event.id).where(Event.subject_index == index)
                                     .order_by(Event.id)))
    attempt_ids = list(session.scalars(select(DeliveryAttempt.id).where(
        DeliveryAttempt.delivery_id.in_(select(Delivery.id).where(
            Delivery.event_id.in_(event_ids))),
        DeliveryAttempt.response_excerpt.is_not(None)).order_by(DeliveryAttempt.id)))

    if subject_hold:  # the whole person is held: nothing goes
        found.holds = subject_hold
        found.kept = {"webhook_bodies": body_ids, "messages": message_ids,
                      "media_documents": [d for d, _ in documents], "events": event_ids,
                      "deliveries": attempt_ids}
        return found
    found.holds = other_holds + document_holds
    found.webhook_bodies = [i for i in body_ids if i not in shared]
    found.kept["webhook_bodies"] = [i for i in body_ids if i in shared]
    found.messages, found.events, found.deliveries = message_ids, event_ids, attempt_ids
    for document_id, owner_id in documents:
        held = document_id in held_documents or owner_id in held_owners
        (found.kept["media_documents"] if held else found.media_documents).append(document_id)
    return found


def erase(session: Session, storage: BlobStorage, subject: Subject, actor: str,
          dry_run: bool = True) -> dict:
    """Find (and unless `dry_run`, erase) what is held about `subject`, audited either
    way; the report the API, the CLI and the console show. Commits."""
    index = subject.index
    found = find(session, index)
    hashes: set[str] = set()
    if not dry_run:
        hashes = _erase(session, found, actor)
    report = {"subject": {"kind": subject.kind, "index": index}, "dry_run": dry_run,
              "records": found.counts(),
              "kept": {kind: len(ids) for kind, ids in found.kept.items()},
              "holds": [{"id": hold.id, "scope": hold.scope, "document_id": hold.document_id,
                         "owner_id": hold.owner_id, "subject_index": hold.subject_index,
                         "reason": hold.reason} for hold in found.holds]}
    audit.record(session, actor, "subject.erasure_preview" if dry_run else "subject.erase",
                 "subject", index, {"subject_kind": subject.kind, "records": report["records"],
                                    "kept": report["kept"],
                                    "holds": [hold.id for hold in found.holds]})
    session.commit()
    if not dry_run and not fold_sqlite_wal(session.get_bind()):
        # PostgreSQL's dead row versions are never dumped, and VACUUM reclaims them;
        # SQLite's WAL holds pages as they were until it is checkpointed
        log.warning("the SQLite WAL could not be emptied after an erasure: a reader was "
                    "busy; the next checkpoint folds it")
    if hashes:
        release_blobs(session, storage, hashes)
    return report


def _erase(session: Session, found: Found, actor: str) -> set[str]:
    """Remove what `found` lists, in the caller's transaction: the hashes whose blobs
    may now be unneeded."""
    documents = list(session.scalars(select(Document).where(
        Document.id.in_(found.media_documents))))
    hashes = delete_documents(session, documents, actor)
    if found.webhook_bodies:
        session.execute(update(WebhookEvent).where(WebhookEvent.id.in_(found.webhook_bodies))
                        .values(body=None))
        subjects.unlink(session, subjects.WEBHOOK_EVENT, found.webhook_bodies)
    if found.messages:
        session.execute(update(WhatsAppMessage).where(WhatsAppMessage.id.in_(found.messages))
                        .values(text=None, phone=None, phone_index=None))
        session.execute(update(WhatsAppMedia).where(WhatsAppMedia.message_id.in_(found.messages))
                        .values(filename=None))
    for event in session.scalars(select(Event).where(Event.id.in_(found.events))):
        event.data, event.subject_index = subjects.scrub(event.data), None
    if found.deliveries:
        session.execute(update(DeliveryAttempt).where(DeliveryAttempt.id.in_(found.deliveries))
                        .values(response_excerpt=None))
    return hashes
