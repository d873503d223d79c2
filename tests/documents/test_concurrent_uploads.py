"""Eight identical uploads at once from one owner: the UNIQUE constraint makes one row.

The same race for a single document and for a bulk import's archive.
"""
import io
import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from documents.imports import create_import
from documents.ingest import create_document, spool
from documents.models import Document, Import
from documents.sniffing import DEFAULT_ALLOWLIST
from documents.storage.local import LocalStorage
from store.db import make_engine
from tests import services
from tests.documents import files
from tests.imports import archives
from webapp.config import normalize_database_url
from webapp.migrate import upgrade

RACERS = 8


def race(tmp_path, worker_index, name, content, create):
    """Run `create(session, storage, spooled)` in RACERS threads at once."""
    url = services.fresh_database(f"sluice_{name}_race_{worker_index}", tmp_path)
    upgrade(url)
    engine = make_engine(normalize_database_url(url))
    storage = LocalStorage(tmp_path / "store")
    start = threading.Barrier(RACERS)

    def racer(_):
        spooled = spool(io.BytesIO(content), storage, 10 * 1024 * 1024)
        with Session(engine) as session:
            start.wait()
            row, created = create(session, storage, spooled)
            session.commit()
            return row.id, created

    try:
        with ThreadPoolExecutor(RACERS) as pool:
            results = list(pool.map(racer, range(RACERS)))
        with Session(engine) as session:
            counts = {model.__tablename__: session.scalar(
                select(func.count()).select_from(model)) for model in (Document, Import)}
    finally:
        engine.dispose()
    assert len({row_id for row_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert list((tmp_path / "store" / "tmp").iterdir()) == []
    return counts


def test_concurrent_identical_uploads_create_one_document(tmp_path, worker_index):
    counts = race(tmp_path, worker_index, "upload", files.pdf("race"),
                  lambda session, storage, spooled: create_document(
                      session, storage, 7, spooled, "race.pdf", None, DEFAULT_ALLOWLIST))
    assert counts == {"documents": 1, "imports": 0}


def test_concurrent_identical_archives_create_one_import(tmp_path, worker_index):
    counts = race(tmp_path, worker_index, "import", archives.build([("a.pdf", files.pdf())]),
                  lambda session, storage, spooled: create_import(
                      session, storage, 7, spooled, None, None))
    assert counts == {"documents": 0, "imports": 1}
