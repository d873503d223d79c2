"""When the store loses bytes the rows still point at: downloads say so (410
blob_missing), never hand out a link that 404s; `flask storage verify` and the
verify_storage job find missing and corrupt blobs, mark their documents missing_blob
(audited, shown, counted), and put them back to a scan once the bytes return."""
import hashlib
from pathlib import Path

from sqlalchemy import select

from cron.jobs import registry
from cron.runner import run_job
from documents.models import CLEAN, MISSING_BLOB, PENDING_SCAN, Document
from documents.scanner import client_from_url
from documents.scanning import scan_document
from documents.storage import from_config
from store.audit import AuditLog
from store.outbox import OutboxMessage
from store.task_names import SCAN_DOCUMENT
from tasks.app_state import redis_client
from tests.documents import files
from tests.documents.conftest import make_owners, upload
from webapp.extensions import db


def blob_path(app, content: bytes) -> Path:
    digest = hashlib.sha256(content).hexdigest()
    return Path(app.config["STORAGE_DIR"], "sha256", digest[:2], digest[2:4], digest)


def clean_document(app, client, owner, content: bytes) -> int:
    document_id = upload(client, owner, content).get_json()["id"]
    with app.app_context():  # the verdict is not what these tests are about
        db.session.get(Document, document_id).status = CLEAN
        db.session.commit()
    return document_id


def status_of(app, document_id: int) -> str:
    with app.app_context():
        return db.session.get(Document, document_id).status


def audit_actions(app, document_id: int) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(AuditLog.action).where(
            AuditLog.subject_type == "document", AuditLog.subject_id == str(document_id))
            .order_by(AuditLog.id)))


def test_a_link_for_bytes_the_store_lost_is_410_and_marks_the_document(app, client):
    # Reported: download-url answered 200 for 289 documents the store no longer had,
    # and each link then gave 404.
    owner = make_owners(app)["alice"]
    content = files.pdf("lost")
    document_id = clean_document(app, client, owner, content)
    blob_path(app, content).unlink()
    response = client.post(f"/v1/documents/{document_id}/download-url",
                           headers={"Authorization": owner["Authorization"]})
    assert response.status_code == 410
    assert response.get_json()["error"]["code"] == "blob_missing"
    assert status_of(app, document_id) == MISSING_BLOB
    assert "document.blob_missing" in audit_actions(app, document_id)
    shown = client.get(f"/v1/documents/{document_id}",
                       headers={"Authorization": owner["Authorization"]}).get_json()
    assert shown["status"] == MISSING_BLOB
    again = client.post(f"/v1/documents/{document_id}/download-url",
                        headers={"Authorization": owner["Authorization"]})
    assert again.status_code == 410


def test_a_link_minted_before_the_bytes_went_is_410_too(app, client):
    owner = make_owners(app)["bob"]
    content = files.pdf("lost after the link")
    document_id = clean_document(app, client, owner, content)
    link = client.post(f"/v1/documents/{document_id}/download-url",
                       headers={"Authorization": owner["Authorization"]}).get_json()["url"]
    blob_path(app, content).unlink()
    response = client.get(link)
    assert response.status_code == 410
    assert response.get_json()["error"]["code"] == "blob_missing"
    assert status_of(app, document_id) == MISSING_BLOB


def test_a_download_on_s3_asks_the_store_before_minting_a_link(make_app, s3_env, moto):
    settings, bucket = s3_env
    app = make_app(**settings)
    client = app.test_client()
    owner = make_owners(app)["alice"]
    content = files.pdf("on s3")
    document_id = clean_document(app, client, owner, content)
    with app.app_context():
        storage = from_config(app.config)
        storage.delete(hashlib.sha256(content).hexdigest())
    response = client.post(f"/v1/documents/{document_id}/download-url",
                           headers={"Authorization": owner["Authorization"]})
    assert response.status_code == 410
    assert status_of(app, document_id) == MISSING_BLOB


def test_verify_finds_missing_and_corrupt_blobs_and_restores_them(app, client, runner):
    owners = make_owners(app)
    whole, lost, spoiled = files.pdf("whole"), files.pdf("lost one"), files.pdf("spoiled")
    ids = {name: clean_document(app, client, owners["alice"], content)
           for name, content in (("whole", whole), ("lost", lost), ("spoiled", spoiled))}
    # the same bytes under another owner: one blob, two documents
    twin = clean_document(app, client, owners["bob"], lost)
    lost_bytes = blob_path(app, lost).read_bytes()
    blob_path(app, lost).unlink()
    corrupt = bytearray(blob_path(app, spoiled).read_bytes())
    corrupt[-1] ^= 0xFF  # same size, other bytes: only the hash tells
    blob_path(app, spoiled).write_bytes(bytes(corrupt))

    quick = runner.invoke(args=["storage", "verify", "--quick"])
    assert quick.exit_code == 1, quick.output
    assert "done: checked=3 ok=2 missing=1 corrupt=0" in quick.output
    assert status_of(app, ids["spoiled"]) == CLEAN  # --quick checks sizes only

    full = runner.invoke(args=["storage", "verify"])
    assert full.exit_code == 1, full.output
    assert "done: checked=3 ok=1 missing=1 corrupt=1 restored=0 documents_marked=1" \
        in full.output
    assert [status_of(app, ids[n]) for n in ("whole", "lost", "spoiled")] == \
        [CLEAN, MISSING_BLOB, MISSING_BLOB]
    assert status_of(app, twin) == MISSING_BLOB

    blob_path(app, lost).write_bytes(lost_bytes)  # an operator restores the object
    healed = runner.invoke(args=["storage", "verify"])
    assert "missing=0 corrupt=1 restored=2" in healed.output
    assert status_of(app, ids["lost"]) == status_of(app, twin) == PENDING_SCAN
    assert "document.blob_restored" in audit_actions(app, twin)
    with app.app_context():
        scans = [m.kwargs["document_id"] for m in db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.task_name == SCAN_DOCUMENT))]
    assert ids["lost"] in scans and twin in scans


def test_the_verify_storage_job_samples_and_marks(make_app):
    app = make_app(STORAGE_VERIFY_SAMPLE=50)
    client = app.test_client()
    owner = make_owners(app)["alice"]
    content = files.pdf("sampled")
    document_id = clean_document(app, client, owner, content)
    blob_path(app, content).unlink()
    with app.app_context():
        job = registry(app.config)["verify_storage"]
        run = run_job(db.session, redis_client(), job, trigger="manual", config=app.config)
    assert run.outcome == "succeeded", run.error
    assert run.detail["missing"] == 1 and run.detail["documents_marked"] == 1
    assert status_of(app, document_id) == MISSING_BLOB


def test_a_scan_of_bytes_the_store_lost_is_missing_blob_not_a_retry(app, client, clamd_url):
    owner = make_owners(app)["alice"]
    content = files.pdf("never scanned")
    document_id = upload(client, owner, content).get_json()["id"]
    blob_path(app, content).unlink()
    with app.app_context():
        status = scan_document(db.session, from_config(app.config),
                               client_from_url(clamd_url, timeout=10), document_id, 10 ** 8)
        db.session.commit()
    assert status == MISSING_BLOB
    assert status_of(app, document_id) == MISSING_BLOB
