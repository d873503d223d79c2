"""A clean document's text: extracted (a PDF's text layer, a DOCX's paragraphs, an
XLSX's cells, plain text) or read by OCR (images, and PDF pages without text), indexed
for owner-scoped full-text search, with a small PNG preview of its first page.

- `extract`: the program that reads one file, run as a subprocess under hard limits;
  it imports nothing of Sluice's, so a parser bomb takes down only itself.
- `sandbox`: runs it (CPU, memory and wall-clock limits; no secrets in its
  environment) and turns what it printed into an `Extraction`.
- `index`: the stored text (sealed) and the search index: a tsvector on PostgreSQL,
  FTS5 on SQLite, one API over both.
- `enrich`: the operation the `enrich` queue's task runs, and what an infected verdict
  or a deletion undoes.

Only bytes a scan called clean are ever read here.
"""
PENDING, EXTRACTED, OCR, LIMITED, FAILED, SKIPPED = (
    "pending", "extracted", "ocr", "limited", "failed", "skipped")
TEXT_STATUSES = (PENDING, EXTRACTED, OCR, LIMITED, FAILED, SKIPPED)
