"""Document text benchmark (`make bench`): OCR throughput, and search latency.

1. Pages per second for a 10-page image-only PDF (a scan: no text layer), read the
   way the `enrich` worker reads it (documents/text/sandbox.py: the sandboxed
   subprocess, pdfinfo, pdftotext, then per page pdftoppm at 300 dpi and tesseract,
   and the preview), against the ceiling of the `tesseract` command alone over the same
   pages already rasterised, in the same run, one core each (OMP_THREAD_LIMIT=1).
   Target: at least 0.8x. BENCH_ROUNDS rounds (default 3), median.
2. Search over BENCH_SEARCH_DOCUMENTS (default 100,000) documents' text on PostgreSQL:
   a generated corpus (about 150 words each, Zipf-distributed over a 20,000-word
   vocabulary, and a reference number of its own) loaded with COPY, sealed as Sluice
   seals it, its tsvector computed by PostgreSQL; then BENCH_SEARCH_QUERIES (default
   300) `GET /v1/documents?q=` through the app (owner-scoped, ranked, snippets): one
   third a reference number (one match), one third a mid-frequency word (hundreds of
   matches), one third two such words. p50 and p95 in ms. Target: p95 under 50 ms.

Ends with `RESULT ocr ratio_to_ceiling=… search_p95_ms=…`.
Environment: BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test).
"""
from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from documents.text.sandbox import Limits, run  # noqa: E402
from tests.documents import files  # noqa: E402
from tests.services import DATA_KEYS, INDEX_KEY, fresh_postgres_database  # noqa: E402

PAGES = 10
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
DOCUMENTS = int(os.environ.get("BENCH_SEARCH_DOCUMENTS", "100000"))
QUERIES = int(os.environ.get("BENCH_SEARCH_QUERIES", "300"))
VOCABULARY = 20_000
WORDS_PER_DOCUMENT = 150
SYLLABLES = ("ka", "lo", "mi", "ser", "tan", "vo", "ri", "del", "pu", "nas", "gor", "fe",
             "bi", "tol", "quin", "sha", "mur", "ex", "dra", "ven")


# --- 1. OCR ---------------------------------------------------------------------------

def scanned_pdf(path: Path) -> None:
    """An image-only PDF of PAGES A4 pages at 150 dpi, each 30 lines of text."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(files.FONT, 22)
    pages = []
    for number in range(PAGES):
        page = Image.new("L", (1240, 1754), 255)
        draw = ImageDraw.Draw(page)
        for line in range(30):
            draw.text((80, 80 + 52 * line), f"Page {number + 1} line {line + 1}: invoice "
                      f"{40000 + 97 * number + line} settled for account {line * 7:04d}",
                      font=font, fill=0)
        pages.append(page)
    pages[0].save(path, "PDF", resolution=150, save_all=True, append_images=pages[1:])


def ceiling_pages_per_second(pdf: Path, workdir: Path) -> float:
    """tesseract alone over the same pages, rasterised beforehand as the reader does."""
    images = []
    for number in range(1, PAGES + 1):
        prefix = workdir / f"ceiling-{number}"
        subprocess.run(["pdftoppm", "-f", str(number), "-l", str(number), "-singlefile", "-r",
                        "300", "-gray", str(pdf), str(prefix)], check=True)
        images.append(prefix.with_suffix(".pgm"))
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    started = time.perf_counter()
    for image in images:
        subprocess.run(["tesseract", str(image), "-", "-l", "eng", "--psm", "3"], check=True,
                       capture_output=True, env=env)
    return PAGES / (time.perf_counter() - started)


def reader_pages_per_second(pdf: Path, workdir: Path) -> float:
    started = time.perf_counter()
    result = run(pdf, "application/pdf", Limits(wall_seconds=600), workdir / "preview.png")
    seconds = time.perf_counter() - started
    assert result.status == "ocr" and result.pages_ocr == PAGES, result
    assert "invoice 40000" in result.text, result.text[:200]
    return PAGES / seconds


# --- 2. search ------------------------------------------------------------------------

def vocabulary() -> list[str]:
    rng = random.Random(7)
    words: set[str] = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def load_corpus(app, words: list[str]) -> None:
    """DOCUMENTS documents of owner 1, clean and read, their text sealed, by COPY: one
    COPY at a time (a connection runs one), each document's text made again from its
    own seed rather than held for all three."""
    from sqlalchemy import text

    from store.sealing import ring
    from webapp.extensions import db

    cumulative, total = [], 0.0
    for rank in range(1, len(words) + 1):
        total += 1 / rank
        cumulative.append(total)

    def body(number: int) -> str:
        chosen = random.Random(number).choices(words, cum_weights=cumulative,
                                               k=WORDS_PER_DOCUMENT)
        return " ".join(chosen) + f" reference REF{number:07d}"

    keys, created = ring(), "2026-12-01T00:00:00Z"
    with app.app_context():
        connection = db.session.connection().connection.driver_connection
        with connection.cursor() as cursor:
            cursor.execute("CREATE UNLOGGED TABLE bench_plain (document_id bigint, body text)")
            with cursor.copy("COPY documents (id, owner_id, sha256, size, mime_type, filename,"
                             " status, scan_attempts, created_at, text_status, text_characters,"
                             " text_pages_ocr, has_preview) FROM STDIN") as copy:
                for number in range(1, DOCUMENTS + 1):
                    copy.write_row((number, 1, f"{number:064x}", 1000, "application/pdf",
                                    f"scan-{number:07d}.pdf", "clean", 1, created, "ocr",
                                    len(body(number)), 1, False))
            with cursor.copy("COPY document_texts (document_id, indexed_name, body, "
                             "created_at) FROM STDIN") as copy:
                for number in range(1, DOCUMENTS + 1):
                    copy.write_row((number, f"scan-{number:07d}.pdf",
                                    keys.seal(body(number).encode()), created))
            with cursor.copy("COPY bench_plain (document_id, body) FROM STDIN") as copy:
                for number in range(1, DOCUMENTS + 1):
                    copy.write_row((number, body(number)))
            cursor.execute(
                "UPDATE document_texts t SET search = "
                "setweight(to_tsvector('english', t.indexed_name), 'A') || "
                "setweight(to_tsvector('english', p.body), 'B') "
                "FROM bench_plain p WHERE p.document_id = t.document_id")
            cursor.execute("DROP TABLE bench_plain")
            cursor.execute("SELECT setval(pg_get_serial_sequence('documents', 'id'), %s)",
                           (DOCUMENTS,))
        db.session.commit()
        db.session.execute(text("ANALYZE documents"))
        db.session.execute(text("ANALYZE document_texts"))
        db.session.commit()


def queries(words: list[str], rng: random.Random) -> list[tuple[str, str]]:
    middling = words[200:2000]  # each in hundreds of the documents
    found = []
    for number in range(QUERIES):
        kind = number % 3
        if kind == 0:
            found.append(("reference", f"REF{rng.randint(1, DOCUMENTS):07d}"))
        elif kind == 1:
            found.append(("one word", rng.choice(middling)))
        else:
            found.append(("two words", f"{rng.choice(words[50:500])} {rng.choice(middling)}"))
    return found


def search_latencies(database_url: str, words: list[str]) -> dict[str, list[float]]:
    from store.clients import create_client
    from webapp import create_app
    from webapp.extensions import db

    app = create_app({"DATABASE_URL": database_url, "REDIS_URL": "redis://127.0.0.1:6379/12",
                      "SECRET_KEY": "bench", "DATA_KEYS": DATA_KEYS, "INDEX_KEY": INDEX_KEY,
                      "LOG_LEVEL": "WARNING"})
    with app.app_context():
        _, token = create_client(db.session, "bench-searcher", ["documents:read"])
        db.session.commit()
    started = time.perf_counter()
    load_corpus(app, words)
    print(f"corpus: {DOCUMENTS} documents loaded and indexed in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    client, auth = app.test_client(), {"Authorization": f"Bearer {token}"}
    rng, timings = random.Random(5), {}
    asked = queries(words, rng)
    for kind, query in asked[:30]:  # warm-up: the index's pages into the cache
        client.get("/v1/documents", query_string={"q": query}, headers=auth)
    for kind, query in asked:
        started = time.perf_counter()
        response = client.get("/v1/documents", query_string={"q": query}, headers=auth)
        timings.setdefault(kind, []).append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.get_data(as_text=True)
        if kind == "reference":
            found = response.get_json()["documents"]
            assert len(found) == 1 and "<mark>" in found[0]["snippet"], (query, found)
    app.extensions["sluice.db"].engine.dispose()
    return timings


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="sluice-bench-ocr-"))
    pdf = workdir / "scan.pdf"
    scanned_pdf(pdf)
    ratios, readers, ceilings = [], [], []
    for _ in range(ROUNDS):
        ceiling = ceiling_pages_per_second(pdf, workdir)
        reader = reader_pages_per_second(pdf, workdir)
        ceilings.append(ceiling)
        readers.append(reader)
        ratios.append(reader / ceiling)

    base = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    database_url = fresh_postgres_database(base, "sluice_bench_ocr")
    subprocess.run([sys.executable, "-m", "flask", "--app", "webapp", "db", "upgrade"],
                   check=True, env={**os.environ, "DATABASE_URL": database_url,
                                    "DATA_KEYS": DATA_KEYS, "INDEX_KEY": INDEX_KEY,
                                    "SECRET_KEY": "bench"}, capture_output=True)
    words = vocabulary()
    timings = search_latencies(database_url, words)
    every = [ms for samples in timings.values() for ms in samples]

    print("\n== bench/ocr ==")
    print(f"OCR of a {PAGES}-page image-only PDF (300 dpi, one core), {ROUNDS} rounds:")
    print(f"  tesseract alone, pages pre-rasterised  {statistics.median(ceilings):6.2f} pages/s")
    print(f"  Sluice's sandboxed reader             {statistics.median(readers):6.2f} pages/s")
    print(f"  ratio {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) "
          "(target >= 0.8)")
    print(f"search over {DOCUMENTS} documents on PostgreSQL, {len(every)} queries "
          "through GET /v1/documents?q= (ms):")
    for kind, samples in timings.items():
        print(f"  {kind:<10} p50 {statistics.median(samples):6.1f}  "
              f"p95 {percentile(samples, 0.95):6.1f}")
    p95 = percentile(every, 0.95)
    print(f"  all        p50 {statistics.median(every):6.1f}  p95 {p95:6.1f} (target < 50)")
    print(f"RESULT ocr ratio_to_ceiling={statistics.median(ratios):.2f} "
          f"search_p95_ms={p95:.1f} ocr_pages_per_second={statistics.median(readers):.2f} "
          f"ceiling_pages_per_second={statistics.median(ceilings):.2f} documents={DOCUMENTS}")


if __name__ == "__main__":
    main()
