

from cron.jobs import registry
from cron.runner import run_job
from documents.models import Document
from tests.helpers.outbox import queued, relay
from tests.helpers.workers import as_worker
from webapp.extensions import db


def doc(session, sha, status, fingerprint):
    row = Document(owner_id=1, sha256=sha, size=1, mime_type="text/plain", filename="f",
                   status=status, signatures_fingerprint=fingerprint, scan_attempts=1)
    session.add(row)
    session.flush()
    return row.id


def test_rescan_queues_clean_documents_from_older_signatures_and_scan_errors(
        make_app, clamd_url, redis_db):
    app = as_worker(make_app(CLAMD_URL=clamd_url))
    with app.app_context():
        session = db.session
        first = run_job(session, app.extensions["sluice.redis"],
                        registry(app.config)["rescan_documents"], trigger="manual",
                        config=app.config)
        current = first.detail["fingerprint"]
        stale = doc(session, "a" * 64, "clean", "0000000000000000")
        fresh = doc(session, "b" * 64, "clean", current)  # noqa: F841 - must not be queued
        failed = doc(session, "c" * 64, "scan_error", None)
        infected = doc(session, "d" * 64, "infected", "0000000000000000")  # noqa: F841
        session.commit()
        run = run_job(session, app.extensions["sluice.redis"],
                      registry(app.config)["rescan_documents"], trigger="manual",
                      config=app.config)
    assert run.detail == {"queued": 2, "fingerprint": current}
    relay(app)
    assert sorted(m["kwargs"]["document_id"] for m in queued(redis_db, "documents")) == \
        sorted([stale, failed])


def test_without_clamd_the_rescan_says_so(app):
    with app.app_context():
        run = run_job(db.session, app.extensions["sluice.redis"],
                      registry(app.config)["rescan_documents"], trigger="manual",
                      config=app.config)
    assert (run.outcome, run.detail) == ("succeeded", {"queued": 0, "skipped": "no CLAMD_URL"})
