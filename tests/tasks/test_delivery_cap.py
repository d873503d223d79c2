"""A message whose worker keeps dying is redelivered at most TASK_MAX_DELIVERIES times.

Celery requeues a late-acked message whenever its worker is lost; kombu marks it
`redelivered`. Here the task is called as the worker would call a redelivered
message (same task id, `redelivered` set), without killing anything.
"""
from documents.models import PENDING_SCAN, SCAN_ERROR, Document
from tests.documents import files
from tests.documents.conftest import make_owners, upload
from tests.helpers.workers import celery_of
from webapp.extensions import db


def call_as_delivered(task, task_id: str, *args, redelivered: bool):
    task.push_request(id=task_id, delivery_info={"redelivered": redelivered})
    try:
        return task(*args)
    finally:
        task.pop_request()


def status(app, document_id: int) -> str:
    with app.app_context():
        return db.session.get(Document, document_id).status


def test_past_the_cap_a_redelivered_scan_gives_up_as_scan_error(make_app, redis_db, caplog):
    # No CLAMD_URL: each run that is let through leaves the document pending_scan.
    app = make_app(TASK_MAX_DELIVERIES=3)  # the first delivery and two redeliveries
    celery = celery_of(app)
    celery.loader.import_default_modules()
    scan = celery.tasks["sluice.documents.scan"]
    owner = make_owners(app)["alice"]
    document_id = upload(app.test_client(), owner, files.pdf("lost")).get_json()["id"]

    for _ in range(3):  # first deliveries are never counted
        call_as_delivered(scan, "task-1", document_id, redelivered=False)
    for _ in range(2):
        call_as_delivered(scan, "task-1", document_id, redelivered=True)
        assert status(app, document_id) == PENDING_SCAN
    call_as_delivered(scan, "task-1", document_id, redelivered=True)
    assert status(app, document_id) == SCAN_ERROR  # never clean; a rescan can still clear it
    assert "task abandoned: its worker kept dying" in caplog.text
    assert redis_db.ttl("sluice:deliveries:task-1") > 0  # the count does not outlive it

    # Another message (another task id) has its own count.
    with app.app_context():
        db.session.get(Document, document_id).status = PENDING_SCAN
        db.session.commit()
    call_as_delivered(scan, "task-2", document_id, redelivered=True)
    assert status(app, document_id) == PENDING_SCAN
