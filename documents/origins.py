"""How a document came to Sluice, for its `document.scanned` event: uploaded (singly or
directly to the store), in an import, or as WhatsApp media.

The document pipeline knows its own ways in; WhatsApp sits above it (webhooks/), so
it registers how to tell its documents with one `register(...)` line, as a provider
registers itself, and this package never imports it.
"""
from __future__ import annotations

from typing import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from documents.models import ImportRow

# (session, document ids) -> {document id: origin}, for the documents it brought
Finder = Callable[[Session, list[int]], dict[int, dict]]
FINDERS: list[Finder] = []
UPLOAD = {"kind": "upload"}


def register(finder: Finder) -> Finder:
    FINDERS.append(finder)
    return finder


@register
def _imported(session: Session, document_ids: list[int]) -> dict[int, dict]:
    rows = session.execute(select(ImportRow.document_id, func.min(ImportRow.import_id))
                           .where(ImportRow.document_id.in_(document_ids))
                           .group_by(ImportRow.document_id)).all()
    return {document_id: {"kind": "import", "import_id": import_id}
            for document_id, import_id in rows}


def origin_of(session: Session, document_id: int) -> dict:
    """The first way in that knows the document (an import, WhatsApp), else an upload."""
    for finder in FINDERS:
        found = finder(session, [document_id]).get(document_id)
        if found:
            return found
    return dict(UPLOAD)
