"""What clients and operators do with documents and imports beyond uploading them:
find them, and ask for scans again. The API, the console, the CLI and the rescan job
call these, so a filter or a rescan means the same wherever it is asked for.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from documents.models import PENDING_SCAN, Document, DocumentTag, Import
from documents.text import index
from store import audit
from store.clients import ApiClient
from store.db import utcnow
from store.outbox import enqueue
from store.task_names import SCAN_DOCUMENT


@dataclasses.dataclass(frozen=True)
class DocumentFilter:
    """Which documents are meant: any field left None matches everything. An API client
    gives `owner_id` (always its own); the console may give an owner's name."""
    owner_id: int | None = None
    owner_name: str | None = None
    status: str | None = None
    tag: str | None = None
    external_ref: str | None = None
    # ids from elsewhere, as a subquery: e.g. whatsapp.documents_from(source),
    # the documents a WhatsApp source brought (that package sits above this one)
    among: Any = None
    # full-text search: the query's words (index.query_words), all of which must match,
    # and PostgreSQL's text search configuration (index.text_search_config)
    words: tuple[str, ...] = ()
    search_config: str = "simple"

    def where(self, query):
        if self.owner_id is not None:
            query = query.where(Document.owner_id == self.owner_id)
        if self.owner_name:
            query = query.where(Document.owner_id.in_(
                select(ApiClient.id).where(ApiClient.name == self.owner_name)))
        if self.status:
            query = query.where(Document.status == self.status)
        if self.tag:
            query = query.where(Document.id.in_(
                select(DocumentTag.document_id).where(DocumentTag.tag == self.tag)))
        if self.external_ref:
            query = query.where(Document.external_ref == self.external_ref)
        if self.among is not None:
            query = query.where(Document.id.in_(self.among))
        return query


def find_documents(session: Session, which: DocumentFilter, *, limit: int,
                   before_id: int | None = None, offset: int = 0) -> list[Document]:
    """Matching documents, newest first (best first for a search): a page by
    `before_id` (the console) or by `offset` (the API's numbered pages)."""
    query = which.where(select(Document)).order_by(Document.id.desc())
    if before_id:
        query = query.where(Document.id < before_id)
    if which.words:
        query = index.search(session, query, list(which.words), which.search_config)
    return list(session.scalars(query.offset(offset).limit(limit)))


def owned_document(session: Session, document_id: int, owner_id: int,
                   *, active_owner: bool = False) -> Document | None:
    """The document if `owner_id` owns it; `active_owner`: and that client is not revoked
    (a download link is its client's, and ends when the client does)."""
    query = select(Document).where(Document.id == document_id, Document.owner_id == owner_id)
    if active_owner:
        query = query.where(Document.owner_id.in_(
            select(ApiClient.id).where(ApiClient.revoked_at.is_(None))))
    return session.scalar(query)


def document_exists(session: Session, document_id: int) -> bool:
    return session.get(Document, document_id) is not None


def recent_imports(session: Session, limit: int) -> list[Import]:
    return list(session.scalars(select(Import).order_by(Import.id.desc()).limit(limit)))


def stuck_pending(session: Session, older_than: dt.timedelta, limit: int) -> list[int]:
    """Documents still waiting for a first verdict past `older_than`, oldest first: their
    scan message was lost (a worker died with it, the broker lost it), or no scanner
    existed when they came in."""
    return list(session.scalars(
        select(Document.id).where(Document.status == PENDING_SCAN,
                                  Document.created_at < utcnow() - older_than)
        .order_by(Document.id).limit(limit)))


def rescan_pending(session: Session, older_than: dt.timedelta, cap: int, actor: str) -> int:
    """Queue a scan for up to `cap` stuck pending documents (an operator's action, or
    the rescan job's); audited once, with the count. The caller commits."""
    ids = stuck_pending(session, older_than, cap)
    session.execute(update(Document).where(Document.id.in_(ids)).values(enqueued_at=utcnow()))
    for document_id in ids:
        enqueue(session, SCAN_DOCUMENT, {"document_id": document_id})
    if ids:
        audit.record(session, actor, "document.rescan_pending", "document", "*",
                     {"count": len(ids), "first_id": ids[0], "last_id": ids[-1]})
    return len(ids)


def request_rescan(session: Session, document: Document, actor: str) -> None:
    """Scan again (an operator's decision): queued, audited; the verdict replaces the
    old one, and an infected one still marks every copy of the bytes."""
    document.enqueued_at = utcnow()
    enqueue(session, SCAN_DOCUMENT, {"document_id": document.id})
    audit.record(session, actor, "document.rescan", "document", document.id,
                 {"previous_status": document.status})
