"""Retry policies declared on the tasks: retry with backoff while the scanner is away,
then the domain's final state, never clean."""
import json

import pytest
from celery.exceptions import Retry

from documents.models import Document
from store.task_names import SCAN_DOCUMENT
from tests.documents import files
from tests.documents.conftest import make_owners, upload
from tests.helpers.workers import celery_of, worker_request
from webapp.extensions import db


@pytest.fixture
def scan_down(make_app, tmp_path):
    """An app whose clamd socket answers nobody, and a pending document."""
    app = make_app(CLAMD_URL=f"unix://{tmp_path / 'no-clamd.sock'}",
                   DOCUMENT_SCAN_MAX_RETRIES=3)
    celery = celery_of(app)
    celery.loader.import_default_modules()
    owner = make_owners(app)["alice"]
    document_id = upload(app.test_client(), owner, files.pdf("retry me")).get_json()["id"]
    return app, celery.tasks[SCAN_DOCUMENT], document_id


def status(app, document_id: int) -> str:
    with app.app_context():
        return db.session.get(Document, document_id).status


def test_a_scan_with_clamd_down_is_retried_with_a_countdown(scan_down, redis_db):
    app, scan, document_id = scan_down
    assert scan.max_retries == 3  # DOCUMENT_SCAN_MAX_RETRIES, through task_annotations
    redis_db.delete("documents")
    with worker_request(scan, "scan-1", document_id), pytest.raises(Retry) as retry:
        scan(document_id)
    assert 0 <= retry.value.when <= 2  # full jitter under retry_backoff=2
    [message] = [json.loads(m) for m in redis_db.lrange("documents", 0, -1)]
    assert (message["headers"]["task"], message["headers"]["retries"]) == (SCAN_DOCUMENT, 1)
    assert status(app, document_id) == "pending_scan"


def test_once_its_retries_are_spent_a_scan_gives_up_as_scan_error(scan_down):
    app, scan, document_id = scan_down
    # apply() runs the task through Celery's tracer, which calls on_failure as a worker
    # does; retries=3 is the last attempt DOCUMENT_SCAN_MAX_RETRIES allows.
    result = scan.apply(args=[document_id], retries=3, throw=False)
    assert result.failed()
    assert status(app, document_id) == "scan_error"
