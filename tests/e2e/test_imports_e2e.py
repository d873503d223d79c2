"""A bulk import through gunicorn and a real worker whose processes are SIGKILLed mid-import."""
import os
import signal

import pytest
import requests
from sqlalchemy import func, select

from documents.models import Document, Import, ImportRow
from tests.e2e.conftest import bearer, fresh_stack_environment
from tests.e2e.faults import children, report
from tests.e2e.harness import Stack, app_settings
from tests.imports import archives
from tests.services import wait_for
from webapp import create_app
from webapp.extensions import db

pytestmark = pytest.mark.e2e
ENTRIES = 3000


@pytest.fixture
def import_stack(tmp_path, worker_index):
    env = fresh_stack_environment(tmp_path, worker_index, "imports_e2e")
    env.update(STORAGE_DIR=str(tmp_path / "storage"), WORKER_CONCURRENCY="2",
               IMPORT_BATCH_SIZE="50")
    stack = Stack(tmp_path / "logs", env)
    stack.release()
    stack.start("web", "worker")
    app = create_app(app_settings(env))
    auth = bearer(app, "e2e-importer", ["imports:write"])
    try:
        stack.wait_ready()
        yield stack, app, auth
    finally:
        stack.stop()
        app.extensions["sluice.db"].engine.dispose()


@pytest.mark.faults
def test_a_worker_killed_mid_import_resumes_without_duplicates(import_stack, record_property):
    stack, app, auth = import_stack
    archive = archives.build([(f"notes/{i:05d}.txt", f"note number {i}\n".encode())
                              for i in range(ENTRIES)])
    response = requests.post(stack.url("/v1/imports"), headers=auth, timeout=60,
                             files={"archive": ("notes.zip", archive)})
    assert response.status_code == 202, response.text
    accepted = response.json()  # as recorded, though a worker may already have started
    assert (accepted["status"], accepted["processed"], accepted["succeeded"],
            accepted["total"], accepted["percent"]) == ("queued", 0, 0, None, 0.0)
    import_id = accepted["id"]

    def progress():
        return requests.get(stack.url(f"/v1/imports/{import_id}"), headers=auth,
                            timeout=10).json()
    mid = wait_for(lambda: (lambda p: p if p["processed"] >= 100 else None)(progress()),
                   timeout=60, interval=0.05, what="the import to get going")
    assert mid["status"] == "running" and mid["processed"] < ENTRIES
    pool = children(stack.processes["worker"].pid)
    assert pool, "the worker has no pool processes"
    for pid in pool:  # what the OOM killer would do to the process running the import
        os.kill(pid, signal.SIGKILL)

    done = wait_for(lambda: (lambda p: p if p["status"] not in ("queued", "running")
                             else None)(progress()),
                    timeout=120, interval=0.3, what="the import to finish")
    assert {k: done[k] for k in ("status", "total", "processed", "succeeded", "duplicates",
                                 "rejected")} == {
        "status": "completed", "total": ENTRIES, "processed": ENTRIES, "succeeded": ENTRIES,
        "duplicates": 0, "rejected": 0}
    with app.app_context():
        job = db.session.get(Import, import_id)
        documents = db.session.scalar(select(func.count()).select_from(Document))
        rows, distinct_rows = db.session.execute(
            select(func.count(), func.count(func.distinct(ImportRow.row_no)))
            .where(ImportRow.import_id == import_id)).one()
    report(record_property, "worker SIGKILLed mid-import", {
        "sent": ENTRIES, "acknowledged": ENTRIES, "processed": distinct_rows,
        "lost": ENTRIES - distinct_rows,
        "duplicated": (rows - distinct_rows) + (documents - distinct_rows),
        "pool_processes_killed": len(pool), "attempts": job.attempts})
    assert job.attempts >= 2, "the import was not interrupted"
    assert documents == ENTRIES and rows == distinct_rows == ENTRIES
    assert "signal 9 (SIGKILL)" in stack.log("worker")
