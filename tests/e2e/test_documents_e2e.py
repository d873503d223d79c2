"""Uploads through gunicorn, scanned by the worker with a real clamd of this test's own.

clamd stopped under a stream of uploads is a fault scenario: tests/e2e/test_faults.py.
"""
import pytest
import requests

from tests.documents import files
from tests.e2e.conftest import bearer, fresh_stack_environment
from tests.e2e.harness import Stack, app_settings
from tests.services import Clamd, wait_for
from webapp import create_app

pytestmark = pytest.mark.e2e


@pytest.fixture
def scanning_stack(tmp_path, worker_index):
    clamd = Clamd(tmp_path / "clamd").start()
    env = fresh_stack_environment(tmp_path, worker_index, "docs_e2e")
    env.update(CLAMD_URL=clamd.url, STORAGE_DIR=str(tmp_path / "storage"),
               WORKER_CONCURRENCY="2")
    stack = Stack(tmp_path / "logs", env)
    stack.release()
    stack.start("web", "worker")
    app = create_app(app_settings(env))
    auth = bearer(app, "e2e-uploader", ["documents:read", "documents:write"])
    try:
        stack.wait_ready()
        yield stack, auth
    finally:
        stack.stop()
        clamd.stop()
        app.extensions["sluice.db"].engine.dispose()


def post(stack, auth, content, name):
    response = requests.post(stack.url("/v1/documents"), headers=auth, timeout=30,
                             files={"file": (name, content)})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def download_link(stack, auth, document_id) -> requests.Response:
    """POST .../download-url: the signed link in `.json()["url"]`, or the refusal."""
    return requests.post(stack.url(f"/v1/documents/{document_id}/download-url"),
                         headers=auth, timeout=10)


def status_becomes(stack, auth, document_id, wanted, timeout=60):
    def current():
        return requests.get(stack.url(f"/v1/documents/{document_id}"), headers=auth,
                            timeout=10).json()["status"]
    return wait_for(lambda: current() == wanted, timeout=timeout, interval=0.3,
                    what=f"document {document_id} to become {wanted}")


def test_upload_scan_and_download_through_the_real_processes(scanning_stack):
    stack, auth = scanning_stack
    clean = files.pdf("e2e")
    clean_id = post(stack, auth, clean, "e2e.pdf")
    infected_id = post(stack, auth, files.EICAR, "eicar.txt")
    status_becomes(stack, auth, clean_id, "clean")
    status_becomes(stack, auth, infected_id, "infected")
    served = requests.get(download_link(stack, auth, clean_id).json()["url"], timeout=10)
    assert served.status_code == 200 and served.content == clean
    assert download_link(stack, auth, infected_id).status_code == 409
