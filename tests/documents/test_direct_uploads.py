"""Direct-to-store uploads against moto's S3 server: presign, PUT to the store, complete,
and the worker's task turning the object into a document with the usual checks."""
import base64
import datetime as dt
import hashlib

import pytest
import requests
from celery.exceptions import Retry
from sqlalchemy import func, select, update

from cron.jobs import registry
from cron.runner import run_job
from documents.models import Document, Upload
from store.db import utcnow
from store.outbox import OutboxMessage
from store.task_names import INGEST_UPLOAD
from tests.documents import files
from tests.documents.conftest import make_owners
from tests.documents.conftest import upload as post_document
from tests.helpers.workers import celery_of, worker_request
from tests.services import free_port
from webapp.extensions import db


@pytest.fixture
def s3_app(make_app, s3_env):
    config, bucket = s3_env
    return make_app(**config), bucket


def alice_of(app) -> dict:
    return make_owners(app)["alice"]


def start(client, owner, **body):
    return client.post("/v1/uploads", json=body, headers={"Authorization": owner["Authorization"]})


def put(target: dict, content: bytes, **headers) -> requests.Response:
    return requests.request(target["method"], target["url"], data=content, timeout=30,
                            headers={**target["headers"], **headers})


def complete(client, owner, upload_id: int):
    return client.post(f"/v1/uploads/{upload_id}/complete",
                       headers={"Authorization": owner["Authorization"]})


def shown(client, owner, upload_id: int) -> dict:
    response = client.get(f"/v1/uploads/{upload_id}",
                          headers={"Authorization": owner["Authorization"]})
    assert response.status_code == 200
    return response.get_json()


def ingest(app, upload_id: int) -> None:
    """The worker's task, called as a worker calls it."""
    celery = celery_of(app)
    celery.loader.import_default_modules()
    task = celery.tasks[INGEST_UPLOAD]
    with worker_request(task, f"ingest-{upload_id}", upload_id):
        task(upload_id)


def sent_to_store(client, owner, content: bytes, filename="invoice.pdf",
                  content_type="application/pdf") -> dict:
    started = start(client, owner, filename=filename, size=len(content),
                    content_type=content_type)
    assert started.status_code == 201, started.get_json()
    body = started.get_json()
    assert put(body["upload"], content).status_code == 200
    return body


def uploads_area(moto, bucket) -> list[str]:
    return [key for key in moto.keys(bucket) if key.startswith("pre/uploads/")]


def ingest_messages(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.task_name == INGEST_UPLOAD))


def test_a_direct_upload_becomes_a_document_exactly_like_a_posted_one(s3_app, moto):
    app, bucket = s3_app
    client, alice = app.test_client(), alice_of(app)
    content = files.pdf("sent straight to the store")
    started = sent_to_store(client, alice, content)
    assert started["status"] == "awaiting_upload" and started["upload"]["method"] == "PUT"
    assert started["upload"]["headers"] == {"Content-Type": "application/pdf",
                                            "Content-Length": str(len(content))}
    assert uploads_area(moto, bucket)  # the bytes wait in the upload area

    first, again = complete(client, alice, started["id"]), complete(client, alice, started["id"])
    assert (first.status_code, first.get_json()["status"]) == (202, "processing")
    assert (again.status_code, again.get_json()["status"]) == (200, "processing")
    assert ingest_messages(app) == 1  # a repeated complete hands nothing more over

    ingest(app, started["id"])
    done = shown(client, alice, started["id"])
    assert done["status"] == "completed" and done["error"] is None
    document = client.get(f"/v1/documents/{done['document_id']}",
                          headers={"Authorization": alice["Authorization"]}).get_json()
    assert (document["status"], document["mime_type"], document["filename"], document["size"]) \
        == ("pending_scan", "application/pdf", "invoice.pdf", len(content))
    assert uploads_area(moto, bucket) == []  # read, stored under its hash, deleted
    assert f"pre/sha256/{document['sha256'][:2]}/{document['sha256'][2:4]}/" \
        f"{document['sha256']}" in moto.keys(bucket)
    # The same bytes posted by the same owner are the same document (per-owner dedup).
    posted = post_document(client, alice, content)
    assert (posted.status_code, posted.get_json()["id"]) == (200, document["id"])


def test_more_bytes_than_were_signed_for_are_refused_without_being_read(s3_app, moto):
    # A store that does not enforce the signed Content-Length (this one does not
    # check signatures at all) must not let a client past the declared size.
    app, bucket = s3_app
    client, alice = app.test_client(), alice_of(app)
    started = start(client, alice, filename="small.txt", size=10,
                    content_type="text/plain").get_json()
    big = b"far more text than the ten bytes it promised\n" * 1000
    target = {**started["upload"], "headers": {"Content-Type": "text/plain"}}
    assert put(target, big).status_code == 200
    assert complete(client, alice, started["id"]).status_code == 202
    ingest(app, started["id"])
    done = shown(client, alice, started["id"])
    assert done["status"] == "rejected" and done["error"]["code"] == "payload_too_large"
    assert done["document_id"] is None and uploads_area(moto, bucket) == []
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Document)) == 0


def test_bytes_that_are_not_what_the_upload_said_are_rejected(s3_app, moto):
    app, bucket = s3_app
    client, alice = app.test_client(), alice_of(app)
    started = sent_to_store(client, alice, files.png(), filename="scan.pdf")
    complete(client, alice, started["id"])
    ingest(app, started["id"])
    done = shown(client, alice, started["id"])
    assert (done["status"], done["error"]["code"]) == ("rejected", "type_mismatch")
    assert done["document_id"] is None and uploads_area(moto, bucket) == []


def test_what_is_refused_before_any_byte_is_sent(s3_app):
    app, _bucket = s3_app
    client, alice = app.test_client(), alice_of(app)
    cap = app.config["DOCUMENT_MAX_BYTES"]
    cases = [
        ({"filename": "a.pdf", "size": cap + 1}, 413, "payload_too_large"),
        ({"filename": "a.exe", "size": 10, "content_type": "application/x-msdownload"},
         415, "unsupported_type"),
        ({"filename": "a.pdf", "size": 0}, 400, "invalid_request"),
        ({"filename": "a.pdf", "size": True}, 400, "invalid_request"),
        ({"filename": "a.pdf", "size": "10"}, 400, "invalid_request"),
        ({"size": 10}, 400, "invalid_request"),
        ({"filename": "a.pdf", "size": 10, "content_type": "pdf"}, 400, "invalid_request"),
    ]
    for body, status, code in cases:
        response = start(client, alice, **body)
        assert (response.status_code, response.get_json()["error"]["code"]) == (status, code), body
    assert client.post("/v1/uploads", data=b"[]", content_type="application/json", headers={
        "Authorization": alice["Authorization"]}).status_code == 400
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Upload)) == 0


def test_complete_before_the_bytes_are_sent_is_409(s3_app):
    app, _bucket = s3_app
    client, alice = app.test_client(), alice_of(app)
    started = start(client, alice, filename="a.pdf", size=100).get_json()
    response = complete(client, alice, started["id"])
    assert (response.status_code, response.get_json()["error"]["code"]) == (409, "not_uploaded")
    assert shown(client, alice, started["id"])["status"] == "awaiting_upload"
    assert ingest_messages(app) == 0


def test_on_file_storage_direct_uploads_are_409_and_point_to_the_upload_route(app, owners):
    response = start(app.test_client(), owners["alice"], filename="a.pdf", size=100)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "direct_upload_unavailable"


def test_abandoned_uploads_expire_and_their_objects_are_purged_but_not_one_in_flight(
        make_app, s3_env, moto):
    config, bucket = s3_env
    app = make_app(**config, UPLOAD_COMPLETE_HOURS=0)  # every object is old enough
    client, alice = app.test_client(), alice_of(app)
    abandoned = sent_to_store(client, alice, files.pdf("never completed"))
    in_flight = sent_to_store(client, alice, files.pdf("completed, not yet ingested"))
    with app.app_context():  # handed over before the deadline passed
        db.session.execute(update(Upload).where(Upload.id == in_flight["id"]).values(
            status="processing"))
        db.session.commit()
        run = run_job(db.session, app.extensions["sluice.redis"],
                      registry(app.config)["purge_retention"], trigger="manual",
                      config=app.config)
    assert (run.detail["uploads_expired"], run.detail["upload_objects_removed"]) == (1, 1)
    assert shown(client, alice, abandoned["id"])["status"] == "expired"
    assert len(uploads_area(moto, bucket)) == 1  # the one the worker may be reading
    late = complete(client, alice, abandoned["id"])
    assert (late.status_code, late.get_json()["error"]["code"]) == (409, "upload_expired")


def test_an_upload_not_completed_in_time_cannot_be_completed(make_app, s3_env):
    config, _bucket = s3_env
    app = make_app(**config)
    client, alice = app.test_client(), alice_of(app)
    started = sent_to_store(client, alice, files.pdf("late"))
    with app.app_context():
        db.session.execute(update(Upload).where(Upload.id == started["id"]).values(
            created_at=utcnow() - dt.timedelta(hours=25)))
        db.session.commit()
    response = complete(client, alice, started["id"])
    assert (response.status_code, response.get_json()["error"]["code"]) == (409, "upload_expired")


def test_the_store_away_during_ingest_retries_then_the_upload_is_failed(make_app, tmp_path):
    app = make_app(STORAGE_URL="s3://nowhere/x", SPOOL_DIR=str(tmp_path / "spool"),
                   S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}")
    celery = celery_of(app)
    celery.loader.import_default_modules()
    task = celery.tasks[INGEST_UPLOAD]
    with app.app_context():
        upload = Upload(owner_id=1, object_name="away", filename="a.pdf",
                        declared_type="application/pdf", size=10, status="processing",
                        url_expires_at=utcnow())
        db.session.add(upload)
        db.session.commit()
        upload_id = upload.id
    with worker_request(task, "ingest-store-away", upload_id), pytest.raises(Retry):
        task(upload_id)
    assert task.apply(args=[upload_id], retries=task.max_retries, throw=False).failed()
    with app.app_context():
        stored = db.session.get(Upload, upload_id)
        assert (stored.status, stored.error_code, stored.document_id) == \
            ("failed", "ingest_failed", None)


def test_hostile_filenames_are_sanitised_like_any_upload(s3_app):
    app, _bucket = s3_app
    client, alice = app.test_client(), alice_of(app)
    content = files.pdf("named badly")
    started = sent_to_store(client, alice, content, filename="../../etc/\u202epasswd\x00.pdf")
    assert started["filename"] == "passwd.pdf"  # no path, no NUL, no RTL override


def test_a_checksum_given_at_start_is_signed_into_the_put_and_checked_on_ingest(s3_app, moto):
    app, bucket = s3_app
    client, alice = app.test_client(), alice_of(app)
    content = files.pdf("checksummed")
    digest = hashlib.sha256(content).hexdigest()
    started = start(client, alice, filename="c.pdf", size=len(content),
                    content_type="application/pdf", sha256=digest.upper()).get_json()
    assert started["sha256"] == digest
    # S3 refuses a PUT whose bytes do not hash to it (BadDigest); the header is signed
    assert started["upload"]["headers"]["x-amz-checksum-sha256"] == \
        base64.b64encode(bytes.fromhex(digest)).decode()
    assert "x-amz-checksum-sha256" in started["upload"]["url"]  # X-Amz-SignedHeaders
    assert put(started["upload"], content).status_code == 200
    etag = client.get(f"/v1/uploads/{started['id']}",
                      headers={"Authorization": alice["Authorization"]}).headers["ETag"]
    completed = client.post(f"/v1/uploads/{started['id']}/complete", headers={
        "Authorization": alice["Authorization"], "If-Match": etag})
    assert completed.status_code == 202
    ingest(app, started["id"])
    assert shown(client, alice, started["id"])["status"] == "completed"

    # a store that did not check it (moto does not): the worker does
    other = files.pdf("a different file of the same length!")[:len(content)]
    wrong = start(client, alice, filename="w.pdf", size=len(content),
                  content_type="application/pdf", sha256=hashlib.sha256(b"x").hexdigest())
    body = wrong.get_json()
    assert put(body["upload"], other).status_code == 200
    stale = client.post(f"/v1/uploads/{body['id']}/complete", headers={
        "Authorization": alice["Authorization"], "If-Match": etag})  # another upload's
    assert stale.status_code == 412
    assert complete(client, alice, body["id"]).status_code == 202
    ingest(app, body["id"])
    done = shown(client, alice, body["id"])
    assert (done["status"], done["error"]["code"]) == ("rejected", "digest_mismatch")
    assert done["document_id"] is None and uploads_area(moto, bucket) == []
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Document)) == 1


@pytest.mark.parametrize("sha256", ["abc", "z" * 64, 12, "0" * 65])
def test_a_malformed_checksum_at_start_is_400(s3_app, sha256):
    app, _bucket = s3_app
    client, alice = app.test_client(), alice_of(app)
    response = start(client, alice, filename="c.pdf", size=10, sha256=sha256)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_digest"
