"""A document's stored text and the index that finds it, on PostgreSQL and on SQLite.

The text itself is sealed at rest (store/sealing.py), like every other piece of
personal data. A search index cannot be sealed and still be searched, so the index
holds the words' normal forms and positions in clear: on PostgreSQL a `tsvector`
column beside the sealed text (GIN-indexed), on SQLite an FTS5 table that keeps no
content of its own (`content=''`). Deleting a document deletes both (`forget`, which
documents/deletion.py calls for every deletion: an owner's, retention's, an
erasure's), and an infected verdict does too.

One API over both: `store`, `forget`, `search` (ranked, the filename above the body)
and `snippet`. A query is words, all of which must match (stemmed the same way as
the text: PostgreSQL's configuration for the first of OCR_LANGUAGES, SQLite's porter
tokenizer).
"""
from __future__ import annotations

import datetime as dt
import html
import re

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    String,
    delete,
    literal_column,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Mapped, Session, mapped_column

from documents.models import Document
from store.db import Base, UTCDateTime, utcnow
from store.sealing import SealedText

# tables and columns the index adds outside the mapped metadata: PostgreSQL's tsvector
# column, and SQLite's FTS5 virtual table with the shadow tables FTS5 makes for it
SEARCH_COLUMN = "search"
FTS_TABLE = "document_search"
FTS_SHADOW = tuple(f"{FTS_TABLE}_{part}" for part in ("data", "idx", "docsize", "config"))
# tesseract's language codes -> PostgreSQL's text search configurations
TEXT_SEARCH_CONFIGS = {
    "eng": "english", "deu": "german", "fra": "french", "spa": "spanish",
    "ita": "italian", "por": "portuguese", "nld": "dutch", "swe": "swedish",
    "nor": "norwegian", "dan": "danish", "fin": "finnish", "rus": "russian",
    "tur": "turkish", "hun": "hungarian", "ron": "romanian",
}
MAX_QUERY_WORDS = 16
TSVECTOR_TOO_LONG = "54000"  # PostgreSQL's program_limit_exceeded
SNIPPET_CHARS = 240
WORD = re.compile(r"[^\W_]+", re.UNICODE)  # letters and digits
PUNCTUATION = re.compile(r"(?:[^\w\s]|_)+", re.UNICODE)


class DocumentText(Base):
    """The text read from one clean document (one per document row: search is
    owner-scoped, and another owner's copy of the same bytes is another row)."""
    __tablename__ = "document_texts"

    document_id: Mapped[int] = mapped_column(
        BigInteger(), ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)
    # what the filename part of the index was made of: SQLite's FTS5 needs the very
    # same values to take a row out again
    indexed_name: Mapped[str] = mapped_column(String(600))
    body: Mapped[str] = mapped_column(SealedText())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


def text_search_config(languages: str) -> str:
    """PostgreSQL's configuration for OCR_LANGUAGES ("eng", "deu+eng"): the first
    language's, or `simple` (no stemming) for one PostgreSQL has none for."""
    first = languages.replace(",", "+").split("+")[0].strip()
    return TEXT_SEARCH_CONFIGS.get(first, "simple")


def query_words(query: str) -> list[str]:
    """The words of a search, lower-cased, at most MAX_QUERY_WORDS."""
    return [word.lower() for word in WORD.findall(query)][:MAX_QUERY_WORDS]


def words_only(value: str) -> str:
    """The text as the index reads it: punctuation is a space, so that the parts of
    "INV-88213", "REF/4471" or "982.50" are words of their own on both databases
    (PostgreSQL's parser would otherwise index "-88213" as a signed number)."""
    return PUNCTUATION.sub(" ", value)


def store(session: Session, document_id: int, name: str, body: str, config: str) -> None:
    """Index a document's text (replacing what it had). The caller commits."""
    forget(session, [document_id])
    name = name[:600]
    session.add(DocumentText(document_id=document_id, indexed_name=name, body=body))
    session.flush()
    name, body = words_only(name), words_only(body)
    if session.get_bind().dialect.name == "postgresql":
        _index_tsvector(session, document_id, name, body, config)
    else:
        session.execute(text(f"INSERT INTO {FTS_TABLE} (rowid, name, body) "
                             "VALUES (:id, :name, :body)"),
                        {"id": document_id, "name": name, "body": body})


def _index_tsvector(session: Session, document_id: int, name: str, body: str,
                    config: str) -> None:
    """A tsvector holds at most 1 MB: a long text of many distinct words (a million
    characters of them makes 1.3 MB) is indexed from its first half, then its first
    quarter, …, until it fits. The whole text is still stored and served."""
    indexed = len(body)
    while True:
        try:
            with session.begin_nested():
                session.execute(text(
                    f"UPDATE document_texts SET {SEARCH_COLUMN} = "
                    "setweight(to_tsvector(CAST(:config AS regconfig), :name), 'A') || "
                    "setweight(to_tsvector(CAST(:config AS regconfig), :body), 'B') "
                    "WHERE document_id = :id"),
                    {"config": config, "name": name, "body": body[:indexed], "id": document_id})
            return
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != TSVECTOR_TOO_LONG or indexed < 1000:
                raise
            indexed //= 2


def forget(session: Session, document_ids: list[int]) -> None:
    """Remove these documents' text and index entries. The caller commits."""
    if not document_ids:
        return
    if session.get_bind().dialect.name != "postgresql":
        # a contentless FTS5 table forgets a row only when told the values it indexed
        for document_id, name, body in session.execute(
                select(DocumentText.document_id, DocumentText.indexed_name, DocumentText.body)
                .where(DocumentText.document_id.in_(document_ids))):
            session.execute(text(
                f"INSERT INTO {FTS_TABLE} ({FTS_TABLE}, rowid, name, body) "
                "VALUES ('delete', :id, :name, :body)"),
                {"id": document_id, "name": words_only(name), "body": words_only(body)})
    session.execute(delete(DocumentText).where(DocumentText.document_id.in_(document_ids))
                    .execution_options(synchronize_session=False))


def search(session: Session, query, words: list[str], config: str):
    """`query` (a select of documents) narrowed to those matching every word, best
    first: the filename and title weigh more than the body. No words, no match."""
    if not words:
        return query.where(False)
    if session.get_bind().dialect.name == "postgresql":
        tsquery = text("plainto_tsquery(CAST(:search_config AS regconfig), :search_words)")
        matched = (select(literal_column("document_texts.document_id").label("id"),
                          literal_column(f"ts_rank(document_texts.{SEARCH_COLUMN}, q)")
                          .label("rank"))
                   .select_from(text(f"document_texts, {tsquery.text} AS q"))
                   .where(text(f"document_texts.{SEARCH_COLUMN} @@ q"))
                   .subquery("matched"))
        params = {"search_config": config, "search_words": " ".join(words)}
    else:
        matched = (select(literal_column("rowid").label("id"),
                          literal_column(f"-bm25({FTS_TABLE}, 10.0, 1.0)").label("rank"))
                   .select_from(text(FTS_TABLE))
                   .where(text(f"{FTS_TABLE} MATCH :search_words"))
                   .subquery("matched"))
        # each word quoted: FTS5's own query syntax (AND, NEAR, column:) stays out of it
        params = {"search_words": " ".join('"' + w.replace('"', "") + '"' for w in words)}
    return (query.join(matched, matched.c.id == Document.id)
            .order_by(None).order_by(matched.c.rank.desc(), Document.id.desc())
            .params(**params))


def bodies(session: Session, document_ids: list[int]) -> dict[int, str]:
    if not document_ids:
        return {}
    return dict(session.execute(select(DocumentText.document_id, DocumentText.body)
                                .where(DocumentText.document_id.in_(document_ids))).all())


def body_of(session: Session, document_id: int) -> str | None:
    return bodies(session, [document_id]).get(document_id)


def _matches(word: str, terms: list[str]) -> bool:
    """Whether a word of the text is one the search matched: the same word, or one
    sharing its stem (invoices ~ invoice), read as a common prefix."""
    lowered = word.lower()
    return any(lowered == term
               or (len(term) > 4 and lowered.startswith(term[:max(4, len(term) - 2)]))
               for term in terms)


def snippet_parts(body: str | None, terms: list[str]) -> list[tuple[str, bool]] | None:
    """Up to SNIPPET_CHARS of the text around the first matched word, as (text, matched)
    runs, whitespace folded; None when the body has none of the words (the filename
    matched). The console renders the runs, escaped; the API, `snippet`."""
    if not body or not terms:
        return None
    first = next((m for m in WORD.finditer(body) if _matches(m.group(), terms)), None)
    if first is None:
        return None
    start = max(0, first.start() - SNIPPET_CHARS // 3)
    start = body.rfind(" ", 0, start) + 1 if start else 0
    window = " ".join(body[start:start + SNIPPET_CHARS].split())
    parts, last = [("…", False)] if start else [], 0
    for match in WORD.finditer(window):
        if _matches(match.group(), terms):
            parts += [(window[last:match.start()], False), (match.group(), True)]
            last = match.end()
    parts.append((window[last:] + ("…" if start + SNIPPET_CHARS < len(body) else ""), False))
    return [(text_, matched) for text_, matched in parts if text_]


def snippet(body: str | None, terms: list[str]) -> str | None:
    """`snippet_parts` as HTML: every run escaped, the matched words in <mark>."""
    parts = snippet_parts(body, terms)
    if parts is None:
        return None
    return "".join(f"<mark>{html.escape(text_)}</mark>" if matched else html.escape(text_)
                   for text_, matched in parts)
