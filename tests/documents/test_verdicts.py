"""A scan verdict belongs to the bytes: blobs are shared by every owner who uploaded them."""
import pytest
from sqlalchemy import func, select

from documents.models import Document
from documents.storage.local import LocalStorage
from store.audit import AuditLog
from store.outbox import OutboxMessage
from store.task_names import SCAN_DOCUMENT
from tests import services
from tests.documents import files
from tests.documents.conftest import make_owners, upload
from tests.documents.test_documents_api import download, scan
from webapp.extensions import db

MARKER = b"SLUICE-SIGNATURES-OF-TOMORROW"


@pytest.fixture(scope="module")
def newer_clamd_url(tmp_path_factory):
    """clamd with a newer database: it also knows the bytes that carry MARKER."""
    clamd = services.Clamd(tmp_path_factory.mktemp("clamd-newer"), extra_signatures=(
        f"Sluice.Test.Tomorrow:0:*:{MARKER.hex()}",)).start()
    yield clamd.url
    clamd.stop()


def test_a_rescan_that_finds_shared_bytes_infected_marks_every_owners_copy(
        app, client, clamd_url, newer_clamd_url, redis_db):
    owners = make_owners(app)
    content = files.pdf("invoice " + MARKER.decode())
    alices = upload(client, owners["alice"], content, "a.pdf").get_json()["id"]
    bobs = upload(client, owners["bob"], content, "b.pdf").get_json()["id"]
    assert scan(app, alices, clamd_url) == scan(app, bobs, clamd_url) == "clean"
    link, served = download(client, owners["alice"], alices)
    assert served.status_code == 200 and served.data == content

    # The signatures improve; a rescan of Bob's copy decides for the bytes.
    assert scan(app, bobs, newer_clamd_url) == "infected"

    with app.app_context():
        rows = {d.id: d for d in db.session.scalars(
            select(Document).where(Document.id.in_([alices, bobs])))}
        assert {d.status for d in rows.values()} == {"infected"}
        assert {d.signature for d in rows.values()} == {"Sluice.Test.Tomorrow.UNOFFICIAL"}
        audited = set(db.session.scalars(select(AuditLog.subject_id).where(
            AuditLog.action == "document.infected")))
        assert audited == {str(alices), str(bobs)}
        storage = LocalStorage(app.config["STORAGE_DIR"])
        sha256 = rows[alices].sha256
        assert storage.is_quarantined(sha256) and not storage.path(sha256).exists()
    # Alice's link, issued while her copy was clean, no longer serves anything.
    again = client.get(link.get_json()["url"])
    assert again.status_code == 404 and again.get_json()["error"]["code"] == "not_found"
    assert download(client, owners["alice"], alices)[0].status_code == 409

    # A third owner uploading the quarantined bytes gets an infected document at once,
    # and nothing is stored or queued for it (no outbox row: the web never publishes).
    with app.app_context():
        scans_before = db.session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.task_name == SCAN_DOCUMENT))
        from webapp.auth import create_client
        _client, token = create_client(db.session, "carol", ["documents:write"])
        db.session.commit()
    carols = upload(client, {"Authorization": f"Bearer {token}"}, content, "c.pdf")
    assert carols.status_code == 201
    assert carols.get_json()["status"] == "infected"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.task_name == SCAN_DOCUMENT)) == scans_before
        assert not LocalStorage(app.config["STORAGE_DIR"]).path(sha256).exists()
