"""Uploads, dedup, isolation, scanning with the real clamd, and signed downloads."""
import base64
import hashlib
import io
import json
import os
from urllib.parse import quote

import pytest
from sqlalchemy import select
from werkzeug.datastructures import FileStorage
from werkzeug.test import EnvironBuilder, encode_multipart, run_wsgi_app

from documents.models import Document
from documents.scanner import client_from_url
from documents.scanning import give_up, scan_document
from documents.storage.local import LocalStorage
from tests.documents import files
from tests.documents.conftest import make_owners, upload
from tests.helpers.clock import SignerClock
from tests.helpers.outbox import queued, relay
from webapp.extensions import db

MB = 1024 * 1024


def scan(app, document_id, clamd_url):
    with app.app_context():
        status = scan_document(db.session, LocalStorage(app.config["STORAGE_DIR"]),
                               client_from_url(clamd_url, timeout=10), document_id, 50 * MB)
        db.session.commit()
        return status


def download(client, owner, document_id):
    link = client.post(f"/v1/documents/{document_id}/download-url",
                       headers={"Authorization": owner["Authorization"]})
    return link, client.get(link.get_json()["url"]) if link.status_code == 200 else None


def test_an_upload_is_stored_by_hash_and_queued_for_scanning(app, client, owners, redis_db):
    content = files.pdf()
    response = upload(client, owners["alice"], content, "Report 2026.pdf")
    assert response.status_code == 201
    body = response.get_json()
    digest = hashlib.sha256(content).hexdigest()
    assert body == {"id": body["id"], "sha256": digest, "size": len(content),
                    "mime_type": "application/pdf", "filename": "Report 2026.pdf",
                    "status": "pending_scan", "created_at": body["created_at"],
                    "scanned_at": None, "origin": None, "title": None, "external_ref": None,
                    "tags": [], "text": None, "preview": False}
    blob = os.path.join(app.config["STORAGE_DIR"], "sha256", digest[:2], digest[2:4], digest)
    assert open(blob, "rb").read() == content
    assert relay(app) == 1
    assert [m["kwargs"] for m in queued(redis_db, "documents")] == [{"document_id": body["id"]}]
    assert os.listdir(os.path.join(app.config["STORAGE_DIR"], "tmp")) == []


def test_same_owner_same_bytes_is_200_another_owner_gets_a_document_of_its_own(
        client, owners):
    content = files.png()
    first = upload(client, owners["alice"], content, "a.png").get_json()
    again = upload(client, owners["alice"], content, "renamed.png")
    assert again.status_code == 200 and again.get_json()["id"] == first["id"]
    theirs = upload(client, owners["bob"], content, "b.png")
    assert theirs.status_code == 201
    assert theirs.get_json()["id"] != first["id"]
    assert theirs.get_json()["filename"] == "b.png"  # nothing of alice's shows


@pytest.mark.parametrize("content, filename, content_type, status, code", [
    (files.pdf(), "invoice.png", None, 415, "type_mismatch"),
    (files.png(), "x.png", "application/pdf", 415, "type_mismatch"),
    (b"PK\x03\x04" + b"\x00" * 40, "a.zip", None, 415, "unsupported_type"),
    (b"", "empty.txt", None, 400, "empty_file"),
])
def test_refused_uploads_store_nothing(app, client, owners, content, filename, content_type,
                                       status, code):
    response = upload(client, owners["alice"], content, filename, content_type)
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code
    with app.app_context():
        assert db.session.scalar(select(Document)) is None
    assert not os.path.exists(os.path.join(app.config["STORAGE_DIR"], "sha256"))


def test_over_the_cap_is_413_and_leaves_no_temp_file(make_app):
    app = make_app(DOCUMENT_MAX_BYTES=MB)
    owners = make_owners(app)
    response = upload(app.test_client(), owners["alice"], b"a" * (MB + 10), "big.txt")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"
    temp = os.path.join(app.config["STORAGE_DIR"], "tmp")
    assert not os.path.exists(temp) or os.listdir(temp) == []


class RecordingStream:
    """A request body like gunicorn's (read() only, no readinto) that notes how
    much the app asks of it per read."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)
        self.asked: list[int] = []

    def read(self, size=-1):
        self.asked.append(size)
        return self._data.read(size)


def test_a_large_upload_is_read_from_the_server_a_megabyte_at_a_time(app, owners):
    # werkzeug's own 64 KB reads made gunicorn copy its receive buffer on every
    # read, and halved upload throughput (bench/documents).
    content = b"0123456789abcdef\n" * (4 * MB // 17)
    boundary, body = encode_multipart({"file": FileStorage(io.BytesIO(content), "big.txt")})
    environ = EnvironBuilder(
        "/v1/documents", method="POST", data=body,
        headers={"Authorization": owners["alice"]["Authorization"],
                 "Content-Type": f"multipart/form-data; boundary={boundary}"}).get_environ()
    stream = environ["wsgi.input"] = RecordingStream(body)
    app_iter, status, _ = run_wsgi_app(app, environ, buffered=True)
    answer = json.loads(b"".join(app_iter))
    assert status.startswith("201"), answer
    assert answer["sha256"] == hashlib.sha256(content).hexdigest()
    reads = [size for size in stream.asked if size > 0]
    assert len(reads) > 1 and min(reads[:-1]) >= MB, reads[:5]  # the last read is the rest


def test_missing_file_and_missing_token(client, owners):
    assert client.post("/v1/documents", headers={"Authorization": owners["alice"][
        "Authorization"]}).get_json()["error"]["code"] == "missing_file"
    assert client.post("/v1/documents").status_code == 401


def test_owners_cannot_see_each_others_documents(client, owners):
    mine = upload(client, owners["alice"], files.pdf("mine")).get_json()["id"]
    bob = {"Authorization": owners["bob"]["Authorization"]}
    assert client.get(f"/v1/documents/{mine}", headers=bob).status_code == 404
    assert client.post(f"/v1/documents/{mine}/download-url", headers=bob).status_code == 404
    assert client.get("/v1/documents", headers=bob).get_json()["documents"] == []
    alice = {"Authorization": owners["alice"]["Authorization"]}
    assert [d["id"] for d in client.get("/v1/documents", headers=alice)
            .get_json()["documents"]] == [mine]


@pytest.mark.parametrize("name, content, mime", [
    ("report.pdf", files.pdf("clean"), "application/pdf"),
    ("letter.docx", files.ooxml("word"),
     "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("sheet.xlsx", files.ooxml("xl"),
     "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
])
def test_clean_files_are_downloadable_byte_identical(app, client, owners, clamd_url,
                                                     name, content, mime):
    document_id = upload(client, owners["alice"], content, name).get_json()["id"]
    link, _ = download(client, owners["alice"], document_id)
    assert link.status_code == 409 and link.get_json()["error"]["code"] == "not_clean"
    assert scan(app, document_id, clamd_url) == "clean"
    link, served = download(client, owners["alice"], document_id)
    assert link.status_code == 200 and link.get_json()["expires_at"]
    assert served.status_code == 200 and served.data == content
    assert served.mimetype == mime
    assert served.headers["Content-Disposition"] == f"attachment; filename*=UTF-8''{name}"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert served.headers["Content-Security-Policy"] == "default-src 'none'"
    assert served.headers["Content-Digest"] == "sha-256=:{}:".format(
        base64.b64encode(hashlib.sha256(content).digest()).decode())
    assert served.headers["ETag"] == f'"{hashlib.sha256(content).hexdigest()}"'
    url = link.get_json()["url"]
    again = client.get(url, headers={"If-None-Match": served.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    with app.app_context():
        row = db.session.get(Document, document_id)
        assert row.scanner_version.startswith("ClamAV") and row.signatures_fingerprint


@pytest.mark.parametrize("name, content", [
    ("eicar.txt", files.EICAR),
    ("eicar.docx", files.ooxml("word", {"word/media/eicar.com": files.EICAR})),
])
def test_infected_files_are_quarantined_and_never_served(app, client, owners, clamd_url,
                                                         name, content):
    document_id = upload(client, owners["alice"], content, name).get_json()["id"]
    assert scan(app, document_id, clamd_url) == "infected"
    link, _ = download(client, owners["alice"], document_id)
    assert link.status_code == 409
    with app.app_context():
        row = db.session.get(Document, document_id)
        assert row.signature.startswith("Sluice.Test.EICAR")
        assert not LocalStorage(app.config["STORAGE_DIR"]).path(row.sha256).exists()
    # Bob's identical bytes are infected too, without a blob to serve.
    bobs = upload(client, owners["bob"], content, name).get_json()["id"]
    assert scan(app, bobs, clamd_url) == "infected"


def test_clamd_down_is_never_clean_then_a_rescan_clears_it(app, client, owners, clamd_url,
                                                           tmp_path):
    document_id = upload(client, owners["alice"], files.pdf("later")).get_json()["id"]
    with pytest.raises(Exception):
        scan(app, document_id, f"unix://{tmp_path / 'no-clamd.sock'}")
    with app.app_context():
        give_up(db.session, document_id)  # what the task does once retries are spent
        db.session.commit()
        assert db.session.get(Document, document_id).status == "scan_error"
    assert download(client, owners["alice"], document_id)[0].status_code == 409
    assert scan(app, document_id, clamd_url) == "clean"


def test_expired_and_tampered_links_are_refused(make_app, clamd_url, monkeypatch):
    clock = SignerClock(monkeypatch)
    app = make_app(DOWNLOAD_LINK_TTL=1)
    owners = make_owners(app)
    client = app.test_client()
    document_id = upload(client, owners["alice"], files.pdf("ttl")).get_json()["id"]
    scan(app, document_id, clamd_url)
    url = client.post(f"/v1/documents/{document_id}/download-url",
                      headers={"Authorization": owners["alice"]["Authorization"]}
                      ).get_json()["url"]
    token = url.rsplit("/", 1)[1]
    tampered = client.get(f"/v1/files/{token[:-2]}{'A' if token[-2] != 'A' else 'B'}"
                          f"{token[-1]}")
    assert tampered.status_code == 403
    assert tampered.get_json()["error"]["code"] == "invalid_link"
    assert client.get(url).status_code == 200  # within its TTL
    clock.ahead = 2
    expired = client.get(url)
    assert expired.status_code == 403 and expired.get_json()["error"]["code"] == "link_expired"


@pytest.mark.parametrize("query", ["status=lost", "page=0", "page=x", "page=\u0661"])
def test_bad_list_arguments_are_400(client, owners, query):
    response = client.get(f"/v1/documents?{query}",
                          headers={"Authorization": owners["alice"]["Authorization"]})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_parameter"


def test_a_raw_body_upload_is_the_same_document_as_a_multipart_one(client, owners):
    """curl --data-binary: the body is the file, its name in Content-Disposition."""
    alice = {"Authorization": owners["alice"]["Authorization"]}
    content = files.pdf("raw body")
    raw = client.post("/v1/documents", data=content, headers={
        **alice, "Content-Type": "application/pdf",
        "Content-Disposition": "attachment; filename*=UTF-8''Fa%C3%A7ture%202026.pdf"})
    assert raw.status_code == 201, raw.get_json()
    body = raw.get_json()
    assert (body["filename"], body["mime_type"], body["sha256"], body["size"]) == (
        "Façture 2026.pdf", "application/pdf", hashlib.sha256(content).hexdigest(),
        len(content))
    again = upload(client, owners["alice"], content, "other name.pdf")
    assert again.status_code == 200 and again.get_json()["id"] == body["id"]


@pytest.mark.parametrize("headers, status, code", [
    ({"Content-Type": "application/octet-stream"}, 400, "empty_file"),
    ({"Content-Type": "application/pdf"}, 400, "empty_file"),
    ({}, 400, "missing_file"),
])
def test_raw_body_uploads_without_bytes_or_type_are_refused(client, owners, headers, status,
                                                            code):
    response = client.post("/v1/documents", data=b"", headers={
        "Authorization": owners["alice"]["Authorization"], **headers})
    assert (response.status_code, response.get_json()["error"]["code"]) == (status, code)


def test_a_raw_body_is_sniffed_capped_and_checked_like_any_upload(make_app):
    app = make_app(DOCUMENT_MAX_BYTES=1024)
    client, alice = app.test_client(), make_owners(app)["alice"]
    auth = {"Authorization": alice["Authorization"]}
    lying = client.post("/v1/documents", data=files.png(), headers={
        **auth, "Content-Type": "application/pdf"})
    assert (lying.status_code, lying.get_json()["error"]["code"]) == (415, "type_mismatch")
    unknown = client.post("/v1/documents", data=b"plain words", headers={
        **auth, "Content-Type": "application/octet-stream",
        "Content-Disposition": 'attachment; filename="notes.txt"'})
    assert unknown.status_code == 201 and unknown.get_json()["mime_type"] == "text/plain"
    too_big = client.post("/v1/documents", data=b"x" * 1025, headers={
        **auth, "Content-Type": "text/plain"})
    assert (too_big.status_code, too_big.get_json()["error"]["code"]) == (
        413, "payload_too_large")
    assert os.listdir(os.path.join(app.config["STORAGE_DIR"], "tmp")) == []


def raw_environ(owner, body: bytes, **headers) -> dict:
    return EnvironBuilder("/v1/documents", method="POST", data=body, headers={
        "Authorization": owner["Authorization"], "Content-Type": "text/plain",
        **headers}).get_environ()


def test_a_raw_body_is_read_from_the_server_whole_megabytes_up_to_its_length(app, owners):
    content = b"0123456789abcdef\n" * (3 * MB // 17)  # a little under 3 MB
    environ = raw_environ(owners["alice"], content)
    stream = environ["wsgi.input"] = RecordingStream(content + b"next request")
    app_iter, status, _ = run_wsgi_app(app, environ, buffered=True)
    answer = json.loads(b"".join(app_iter))
    assert status.startswith("201"), answer
    assert (answer["sha256"], answer["size"]) == (hashlib.sha256(content).hexdigest(),
                                                  len(content))
    assert stream.asked == [MB, MB, len(content) - 2 * MB]  # never past its length


def test_a_raw_body_cut_short_is_400_and_leaves_nothing(app, owners):
    content = b"a text that stops half way\n" * 100
    environ = raw_environ(owners["alice"], content)
    environ["wsgi.input"] = io.BytesIO(content[:1000])  # the client went away
    app_iter, status, _ = run_wsgi_app(app, environ, buffered=True)
    assert status.startswith("400"), b"".join(app_iter)
    with app.app_context():
        assert db.session.scalars(select(Document)).all() == []
    temp = os.path.join(app.config["STORAGE_DIR"], "tmp")
    assert not os.path.exists(temp) or os.listdir(temp) == []


def test_a_chunked_raw_body_without_a_length_is_stored_whole(app, owners):
    content = b"sent in chunks, with no Content-Length\n" * 5000
    environ = raw_environ(owners["alice"], b"", **{"Transfer-Encoding": "chunked"})
    environ.pop("CONTENT_LENGTH", None)
    environ.update({"wsgi.input": io.BytesIO(content), "wsgi.input_terminated": True})
    app_iter, status, _ = run_wsgi_app(app, environ, buffered=True)
    answer = json.loads(b"".join(app_iter))
    assert status.startswith("201"), answer
    assert (answer["sha256"], answer["size"]) == (hashlib.sha256(content).hexdigest(),
                                                  len(content))


def test_revoking_a_client_ends_its_download_links_at_once(app, client, owners, clamd_url):
    document_id = upload(client, owners["alice"], files.pdf("revoked")).get_json()["id"]
    scan(app, document_id, clamd_url)
    link, served = download(client, owners["alice"], document_id)
    assert served.status_code == 200
    result = app.test_cli_runner().invoke(args=["clients", "revoke", "alice"])
    assert result.exit_code == 0, result.output
    after = client.get(link.get_json()["url"])
    assert after.status_code == 404 and after.get_json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("content, name, stored", [
    (files.pdf("polyglot"), "polyglot.html", "polyglot.html.pdf"),
    (b"echo hello\n" * 10, "run.exe", "run.exe.txt"),
    (files.pdf("no extension"), "Invoice No. 5", "Invoice No. 5.pdf"),
    (files.png(), "photo.svg", "photo.svg.png"),
    (files.pdf("kept"), "Report 2026.PDF", "Report 2026.PDF"),
    (b"a,b\n1,2\n", "data.txt", "data.txt"),
])
def test_a_name_whose_extension_says_nothing_known_gets_the_contents_extension(
        app, client, owners, clamd_url, content, name, stored):
    # Declared as generic bytes, as many clients do: only the name and content speak.
    response = upload(client, owners["alice"], content, name, "application/octet-stream")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["filename"] == stored
    scan(app, response.get_json()["id"], clamd_url)
    _link, served = download(client, owners["alice"], response.get_json()["id"])
    assert served.headers["Content-Disposition"].endswith(quote(stored, safe=""))
