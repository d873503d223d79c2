"""Every asynchronous state is redriven from the database once its message is lost:
webhook events, scans, direct uploads, WhatsApp media fetches and imports, each past
its own threshold, each counted, never twice in one threshold."""
import datetime as dt

import pytest
from sqlalchemy import select

from documents.models import Document, Import, Upload
from store.db import utcnow
from store.outbox import OutboxMessage
from store.task_names import EXTRACT_TEXT, FETCH_MEDIA, INGEST_UPLOAD, RUN_IMPORT, SCAN_DOCUMENT
from tests.helpers.jobs import run_now
from webapp.extensions import db
from whatsapp.models import WhatsAppMedia

HOUR = dt.timedelta(hours=1)


def ago(delta: dt.timedelta) -> dt.datetime:
    return utcnow() - delta


def add(session, row):
    session.add(row)
    session.flush()
    return row.id


def document(session, sha: str, status: str, handed_out: dt.datetime) -> int:
    return add(session, Document(owner_id=1, sha256=sha * 64, size=1, mime_type="text/plain",
                                 filename="a.txt", status=status, scan_attempts=0,
                                 enqueued_at=handed_out))


def media(session, position: int, status: str, handed_out: dt.datetime) -> int:
    return add(session, WhatsAppMedia(message_id=1, position=position, source="meta",
                                      provider="meta", wamid="wamid.1", kind="image",
                                      media_ref=str(position), status=status, attempts=0,
                                      enqueued_at=handed_out))


def imported(session, sha: str, status: str, handed_out: dt.datetime) -> int:
    return add(session, Import(owner_id=1, archive_sha256=sha * 64, archive_size=1,
                               status=status, uncompressed_bytes=0, attempts=0,
                               enqueued_at=handed_out))


def direct_upload(session, name: str, status: str, handed_out: dt.datetime) -> int:
    return add(session, Upload(owner_id=1, object_name=name, filename="a.pdf",
                               declared_type="application/pdf", size=1, status=status,
                               url_expires_at=utcnow(), enqueued_at=handed_out))


def redrive(app):
    return run_now(app, "redrive_stuck_work")


def queued_for(app, task_name: str) -> list[dict]:
    with app.app_context():
        return [m.kwargs for m in db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.task_name == task_name)
            .order_by(OutboxMessage.id))]


@pytest.fixture
def app(make_app, clamd_url):
    return make_app(CLAMD_URL=clamd_url, REDRIVE_AFTER=300, REDRIVE_MEDIA_AFTER=1800,
                    REDRIVE_IMPORT_AFTER=2400)


def test_each_kind_is_redriven_past_its_own_threshold_and_only_once(app):
    with app.app_context():
        session = db.session
        scan = document(session, "a", "pending_scan", ago(10 * dt.timedelta(minutes=1)))
        document(session, "b", "pending_scan", ago(dt.timedelta(minutes=1)))  # in time
        document(session, "c", "clean", ago(HOUR))                          # done
        fetch = media(session, 0, "pending", ago(HOUR))
        media(session, 1, "pending", ago(dt.timedelta(minutes=10)))  # retries take longer
        media(session, 2, "fetched", ago(HOUR))
        stalled = imported(session, "d", "running", ago(HOUR))
        lost = imported(session, "e", "queued", ago(HOUR))
        imported(session, "f", "running", ago(dt.timedelta(minutes=20)))  # may still run
        imported(session, "g", "completed", ago(2 * HOUR))
        ingest = direct_upload(session, "u1", "processing", ago(HOUR))
        direct_upload(session, "u2", "awaiting_upload", ago(HOUR))  # the client's move
        unread = document(session, "i", "clean", ago(HOUR))
        session.get(Document, unread).text_status = "pending"       # its message lost
        reading = document(session, "j", "clean", ago(dt.timedelta(minutes=10)))
        session.get(Document, reading).text_status = "pending"      # may still be read
        session.get(Document, document(session, "k", "clean", ago(HOUR))).text_status = "ocr"
        session.commit()

    detail = redrive(app)
    assert detail == {"webhook_events_redriven": 0, "scans_redriven": 1,
                      "direct_uploads_redriven": 1, "media_fetches_redriven": 1,
                      "imports_redriven": 2, "text_readings_redriven": 1}
    assert queued_for(app, SCAN_DOCUMENT) == [{"document_id": scan}]
    assert queued_for(app, FETCH_MEDIA) == [{"media_id": fetch}]
    assert sorted(m["import_id"] for m in queued_for(app, RUN_IMPORT)) == sorted([stalled, lost])
    assert queued_for(app, INGEST_UPLOAD) == [{"upload_id": ingest}]
    assert queued_for(app, EXTRACT_TEXT) == [{"document_id": unread}]

    again = redrive(app)  # each waits a whole threshold before its next hand-out
    assert set(again.values()) == {0}


def test_without_a_scanner_pending_documents_wait_rather_than_loop(make_app):
    app = make_app(CLAMD_URL=None)
    with app.app_context():
        document(db.session, "h", "pending_scan", ago(HOUR))
        db.session.commit()
    detail = redrive(app)
    assert "scans_redriven" not in detail
    assert queued_for(app, SCAN_DOCUMENT) == []


def test_an_import_making_progress_is_not_redriven(app):
    # Its batches move enqueued_at: alive, however long the whole import takes.
    from documents.imports import _commit_batch

    with app.app_context():
        job = db.session.get(Import, imported(db.session, "i", "running", ago(HOUR)))
        _commit_batch(db.session, job, [], 0)
        db.session.commit()
    assert redrive(app)["imports_redriven"] == 0


def test_an_import_redrive_threshold_below_the_task_time_limit_is_refused(app_config):
    from webapp import create_app
    from webapp.config import ConfigError

    with pytest.raises(ConfigError, match="REDRIVE_IMPORT_AFTER"):
        create_app({**app_config, "REDRIVE_IMPORT_AFTER": 600})
