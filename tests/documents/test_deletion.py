"""Owners delete what they sent (documents/deletion.py): a document, or an import and
optionally its documents. 204, then 404; audited; the bytes go once no row needs them."""
from __future__ import annotations

import hashlib
import io

from sqlalchemy import func, select

from documents.models import Document, DocumentTag, Import, ImportRow
from documents.storage.local import LocalStorage
from store.audit import AuditLog
from tests.documents import files
from tests.imports import archives
from tests.imports.conftest import make_owners, post_import
from tests.imports.test_imports import run
from webapp.auth import create_client
from webapp.extensions import db
from whatsapp.models import WhatsAppMedia


def blob_exists(app, content: bytes) -> bool:
    return LocalStorage(app.config["STORAGE_DIR"]).path(
        hashlib.sha256(content).hexdigest()).exists()


def upload(client, owner, content, name="a.pdf"):
    response = client.post("/v1/documents", content_type="multipart/form-data",
                           data={"file": (io.BytesIO(content), name)},
                           headers={"Authorization": owner["Authorization"]})
    assert response.status_code in (200, 201), response.get_json()
    return response.get_json()


def delete(client, owner, path, **headers):
    return client.delete(path, headers={"Authorization": owner["Authorization"], **headers})


def audited(app, action: str) -> list[tuple[str, str]]:
    with app.app_context():
        return [tuple(row) for row in db.session.execute(
            select(AuditLog.actor, AuditLog.subject_id).where(AuditLog.action == action))]


def test_an_owner_deletes_a_document_and_its_bytes_go(app, client):
    alice = make_owners(app)["alice"]
    content = files.pdf("mine to delete")
    document = upload(client, alice, content)
    with app.app_context():
        db.session.add(DocumentTag(document_id=document["id"], tag="x"))
        db.session.commit()
    path = f"/v1/documents/{document['id']}"
    assert blob_exists(app, content)
    gone = delete(client, alice, path)
    assert gone.status_code == 204 and gone.data == b""
    assert client.get(path, headers={"Authorization": alice["Authorization"]}).status_code == 404
    assert delete(client, alice, path).status_code == 404
    assert not blob_exists(app, content)
    assert audited(app, "document.delete") == [("client:alice", str(document["id"]))]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(DocumentTag)) == 0


def test_a_media_item_forgets_the_document_its_owner_deleted(app, client):
    alice = make_owners(app)["alice"]
    document = upload(client, alice, files.pdf("came by WhatsApp"))
    with app.app_context():
        db.session.add(WhatsAppMedia(message_id=1, position=0, source="wa", provider="meta",
                                     wamid="wamid.D", kind="document", media_ref="m-1",
                                     status="fetched", document_id=document["id"]))
        db.session.commit()
    assert delete(client, alice, f"/v1/documents/{document['id']}").status_code == 204
    with app.app_context():
        assert db.session.scalar(select(WhatsAppMedia.document_id)) is None


def test_bytes_another_owner_also_sent_stay_for_them(app, client):
    owners = make_owners(app)
    content = files.pdf("both sent this")
    mine, theirs = upload(client, owners["alice"], content), upload(client, owners["bob"], content)
    assert delete(client, owners["alice"], f"/v1/documents/{mine['id']}").status_code == 204
    assert blob_exists(app, content)
    kept = client.get(f"/v1/documents/{theirs['id']}",
                      headers={"Authorization": owners["bob"]["Authorization"]})
    assert kept.status_code == 200


def test_deleting_needs_the_write_scope_and_a_current_if_match(app, client):
    alice = make_owners(app)["alice"]
    with app.app_context():
        _, reader = create_client(db.session, "reader", ["documents:read"])
        db.session.commit()
    document = upload(client, alice, files.pdf("guarded"))
    path = f"/v1/documents/{document['id']}"
    refused = client.delete(path, headers={"Authorization": f"Bearer {reader}"})
    assert refused.status_code == 403
    etag = client.get(path, headers={"Authorization": alice["Authorization"]}).headers["ETag"]
    stale = delete(client, alice, path, **{"If-Match": '"not-it"'})
    assert stale.status_code == 412 and stale.headers["ETag"] == etag
    assert delete(client, alice, path, **{"If-Match": etag}).status_code == 204


def finished_import(app, client, owner, names=("a.pdf", "b.pdf")) -> tuple[int, bytes]:
    archive = archives.build([(name, files.pdf(f"imported {name}")) for name in names])
    job = post_import(client, owner, archive).get_json()
    run(app, job["id"])
    return job["id"], archive


def documents_of(app, owner_id: int) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Document).where(
            Document.owner_id == owner_id))


def test_an_import_is_deleted_with_or_without_its_documents(app, client):
    alice = make_owners(app)["alice"]
    first, archive = finished_import(app, client, alice)
    assert documents_of(app, alice["id"]) == 2 and blob_exists(app, archive)
    assert delete(client, alice, f"/v1/imports/{first}").status_code == 204
    assert client.get(f"/v1/imports/{first}",
                      headers={"Authorization": alice["Authorization"]}).status_code == 404
    assert documents_of(app, alice["id"]) == 2  # the documents stay unless asked
    assert not blob_exists(app, archive)

    second, _ = finished_import(app, client, alice, names=("c.pdf",))
    assert delete(client, alice, f"/v1/imports/{second}?documents=maybe").status_code == 400
    assert delete(client, alice, f"/v1/imports/{second}?documents=true").status_code == 204
    assert documents_of(app, alice["id"]) == 2
    assert not blob_exists(app, files.pdf("imported c.pdf"))
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Import)) == 0
        assert db.session.scalar(select(func.count()).select_from(ImportRow)) == 0
    assert [subject for _, subject in audited(app, "import.delete")] == [str(first), str(second)]


def test_a_queued_import_cannot_be_deleted_yet(app, client):
    alice = make_owners(app)["alice"]
    job = post_import(client, alice, archives.build([("a.pdf", files.pdf())])).get_json()
    refused = delete(client, alice, f"/v1/imports/{job['id']}")
    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "import_running"
    run(app, job["id"])
    assert delete(client, alice, f"/v1/imports/{job['id']}").status_code == 204
