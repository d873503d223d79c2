"""Uploads through gunicorn, scanned by the worker with a real clamd of this test's own.

clamd stopped under a stream of uploads is a fault scenario: tests/e2e/test_faults.py.
"""
import pytest
import requests

from tests.documents import files
from tests.e2e.conftest import bearer, fresh_stack_environment
from tests.e2e.harness import Stack, app_settings
from tests.services import Clamd, require_ocr, wait_for
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
    stack.start("web", "worker", "enrich")
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


def test_upload_scan_read_and_search_through_the_real_processes(scanning_stack):
    """The Procfile's `enrich` worker reads what the `worker` scanned clean: a photo of a
    receipt by OCR, a PDF by its text layer; both are then found, and previewed."""
    require_ocr()
    stack, auth = scanning_stack
    receipt = post(stack, auth, files.rendered(["RECEIPT", "Reference 60417"]), "receipt.png")
    ledger = post(stack, auth, files.text_pdf(["Ledger entry 60417 for the March invoice run"]),
                  "ledger.pdf")
    infected = post(stack, auth, files.EICAR, "eicar.txt")

    def text_status(document_id):
        text = requests.get(stack.url(f"/v1/documents/{document_id}"), headers=auth,
                            timeout=10).json()["text"]
        return text and text["status"]

    for document_id, wanted in ((receipt, "ocr"), (ledger, "extracted")):
        wait_for(lambda: text_status(document_id) == wanted, timeout=90, interval=0.3,
                 what=f"document {document_id} to be read ({wanted})")
    status_becomes(stack, auth, infected, "infected")
    found = requests.get(stack.url("/v1/documents"), params={"q": "60417"}, headers=auth,
                         timeout=10).json()["documents"]
    assert {d["id"] for d in found} == {receipt, ledger}
    assert all("<mark>60417</mark>" in d["snippet"] for d in found)
    preview = requests.get(stack.url(f"/v1/documents/{receipt}/preview"), headers=auth,
                           timeout=10)
    assert preview.status_code == 200 and preview.content.startswith(b"\x89PNG")
    assert text_status(infected) is None
    assert "document text read" in stack.log("enrich")
