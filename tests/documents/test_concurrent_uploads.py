"""Eight identical uploads at once from one owner: the UNIQUE constraint makes one document."""
import io
import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from documents.ingest import create_document, spool
from documents.models import Document
from documents.sniffing import DEFAULT_ALLOWLIST
from documents.storage import LocalStorage
from tests import services
from tests.documents import files
from webapp.config import normalize_database_url
from webapp.migrate import upgrade
from webhooks.db import make_engine

RACERS = 8


def test_concurrent_identical_uploads_create_one_document(tmp_path, worker_index):
    url = services.fresh_database(f"sluice_upload_race_{worker_index}", tmp_path)
    upgrade(url)
    engine = make_engine(normalize_database_url(url))
    storage = LocalStorage(tmp_path / "store")
    content = files.pdf("race")
    start = threading.Barrier(RACERS)

    def racer(_):
        spooled = spool(io.BytesIO(content), storage, 10 * 1024 * 1024)
        with Session(engine) as session:
            start.wait()
            document, created = create_document(session, storage, 7, spooled, "race.pdf",
                                                None, DEFAULT_ALLOWLIST)
            session.commit()
            return document.id, created

    try:
        with ThreadPoolExecutor(RACERS) as pool:
            results = list(pool.map(racer, range(RACERS)))
        with Session(engine) as session:
            stored = session.scalar(select(func.count()).select_from(Document))
    finally:
        engine.dispose()
    assert len({document_id for document_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert stored == 1
    assert list((tmp_path / "store" / "tmp").iterdir()) == []
