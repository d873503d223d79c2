"""Blob storage backends (file:// and s3:// against moto's server), the failures of an
object store, migrating between backends, and orphaned blobs."""
import hashlib
import os
import time

import pytest
from sqlalchemy import func, select

from documents.models import Document
from documents.storage import StorageUnavailable, open_storage
from documents.storage.local import LocalStorage
from tests.documents import files
from tests.documents.conftest import make_owners, upload
from tests.helpers.workers import celery_of
from tests.services import free_port
from webapp.config import ConfigError
from webapp.extensions import db


def backends(tmp_path, s3_env):
    config, _bucket = s3_env
    return {"file": LocalStorage(tmp_path / "blobs", tmp_path / "spool"),
            "s3": open_storage(config["STORAGE_URL"], config["SPOOL_DIR"],
                               endpoint_url=config["S3_ENDPOINT_URL"])}


def spooled(storage, content: bytes):
    handle, path = storage.temp_file()
    with handle:
        handle.write(content)
    return path, hashlib.sha256(content).hexdigest()


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_every_backend_keeps_the_same_contract(tmp_path, s3_env, kind):
    storage = backends(tmp_path, s3_env)[kind]
    storage.check()
    content = os.urandom(40 * 1024 * 1024 + 17)  # past the multipart threshold
    path, sha256 = spooled(storage, content)
    storage.put(path, sha256)
    assert not path.exists()  # the spool is consumed either way
    again, _ = spooled(storage, content)
    storage.put(again, sha256)  # the same bytes are written once
    assert storage.exists(sha256) and not storage.is_quarantined(sha256)
    with storage.open(sha256) as blob:
        assert hashlib.sha256(blob.read()).hexdigest() == sha256
    with storage.local_copy(sha256) as local:
        assert local.stat().st_size == len(content)
    assert [name for name, _ in storage.blobs()] == [sha256]
    storage.quarantine(sha256)
    assert storage.is_quarantined(sha256) and not storage.exists(sha256)
    with pytest.raises(FileNotFoundError):
        storage.open(sha256)
    assert list(storage.blobs()) == []
    assert os.listdir(tmp_path / "spool") == []


def test_an_unreachable_store_is_storage_unavailable(tmp_path):
    storage = open_storage("s3://nowhere/x", tmp_path,
                           endpoint_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StorageUnavailable):
        storage.check()
    path, sha256 = spooled(storage, b"bytes")
    with pytest.raises(StorageUnavailable):
        storage.put(path, sha256)


def test_an_upload_while_the_store_is_down_is_503_and_stores_no_row(make_app, tmp_path):
    app = make_app(STORAGE_URL="s3://nowhere/x",
                   S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
                   SPOOL_DIR=str(tmp_path / "spool"))
    client = app.test_client()
    response = upload(client, make_owners(app)["alice"], files.pdf("later"))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.get_json()["error"]["code"] == "storage_unavailable"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Document)) == 0
    assert os.listdir(tmp_path / "spool") == []
    ready = client.get("/readyz").get_json()["components"]["storage"]
    assert ready == {"status": "down", "error": "StorageUnavailable"}


def test_documents_served_from_s3_and_migrated_to_it(make_app, s3_env, moto, clamd_url):
    from documents.scanner import client_from_url
    from documents.scanning import scan_document
    from documents.storage import from_config
    from tests.documents.test_documents_api import download

    app = make_app(CLAMD_URL=clamd_url)  # starts on file://
    client, owners = app.test_client(), make_owners(app)
    content = files.pdf("migrate me")
    document_id = upload(client, owners["alice"], content).get_json()["id"]
    runner = app.test_cli_runner()
    config, bucket = s3_env
    env = {"S3_ENDPOINT_URL": config["S3_ENDPOINT_URL"]}
    app.config.update(env)
    first = runner.invoke(args=["storage", "migrate", "--to", config["STORAGE_URL"]])
    assert first.exit_code == 0, first.output
    assert first.output.strip().endswith("copied=1 already_there=0 missing_at_source=0 failed=0")
    again = runner.invoke(args=["storage", "migrate", "--to", config["STORAGE_URL"]])
    assert again.output.strip().endswith("copied=0 already_there=1 missing_at_source=0 failed=0")
    sha256 = hashlib.sha256(content).hexdigest()
    assert moto.keys(bucket) == [f"pre/sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"]

    # The same service, now configured for the store (as after a redeploy).
    app.config.update(config)
    app.extensions.pop("sluice.storage")
    LocalStorage(app.config["STORAGE_DIR"]).delete(sha256)  # nothing left on local disk
    with app.app_context():
        assert scan_document(db.session, from_config(app.config),
                             client_from_url(clamd_url, timeout=10), document_id,
                             50 * 1024 * 1024) == "clean"
        db.session.commit()
    _link, served = download(client, owners["alice"], document_id)
    assert served.status_code == 200 and served.data == content
    assert served.headers["Content-Length"] == str(len(content))


def test_orphaned_blobs_are_purged_after_the_grace_period(make_app, tmp_path):
    from cron.jobs import registry
    from cron.runner import run_job

    app = make_app(ORPHAN_BLOB_GRACE_HOURS=1)
    storage = LocalStorage(app.config["STORAGE_DIR"])
    kept = upload(app.test_client(), make_owners(app)["alice"], files.pdf("kept")).get_json()
    orphan_old, orphan_new = spooled(storage, b"old orphan"), spooled(storage, b"new orphan")
    for path, sha256 in (orphan_old, orphan_new):
        storage.put(path, sha256)
    two_hours_ago = time.time() - 7200
    for sha256 in (orphan_old[1], kept["sha256"]):
        os.utime(storage.path(sha256), (two_hours_ago, two_hours_ago))
    with app.app_context():
        run = run_job(db.session, app.extensions["sluice.redis"],
                      registry(app.config)["purge_retention"], trigger="manual",
                      config=app.config)
    assert run.detail["orphan_blobs_removed"] == 1
    assert not storage.exists(orphan_old[1])
    assert storage.exists(orphan_new[1]) and storage.exists(kept["sha256"])


@pytest.mark.parametrize("overrides, message", [
    ({"DATABASE_URL": "postgresql://u@db.example/x", "SECRET_KEY": None},
     "SECRET_KEY must be set with a PostgreSQL DATABASE_URL"),
    ({"DOWNLOAD_MODE": "redirect"}, "DOWNLOAD_MODE=redirect needs a backend that presigns"),
    ({"STORAGE_URL": "ftp://files.example/x"}, "STORAGE_URL must be"),
])
def test_settings_that_cannot_work_across_hosts_stop_the_start(app_config, overrides, message):
    from webapp import create_app

    with pytest.raises(ConfigError, match=message):
        create_app({**app_config, **overrides})


def test_a_scan_while_the_store_is_down_retries_then_is_scan_error_never_clean(
        make_app, tmp_path, clamd_url):
    from celery.exceptions import Retry

    from store.task_names import SCAN_DOCUMENT
    from tests.helpers.workers import worker_request

    app = make_app(CLAMD_URL=clamd_url, STORAGE_URL="s3://nowhere/x",
                   S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
                   SPOOL_DIR=str(tmp_path / "spool"), DOCUMENT_SCAN_MAX_RETRIES=2)
    celery = celery_of(app)
    celery.loader.import_default_modules()
    scan = celery.tasks[SCAN_DOCUMENT]
    with app.app_context():
        document = Document(owner_id=1, sha256="e" * 64, size=10, mime_type="application/pdf",
                            filename="f.pdf", status="pending_scan", scan_attempts=0)
        db.session.add(document)
        db.session.commit()
        document_id = document.id
    with worker_request(scan, "scan-store-down", document_id), pytest.raises(Retry):
        scan(document_id)
    assert scan.apply(args=[document_id], retries=2, throw=False).failed()
    with app.app_context():
        assert db.session.get(Document, document_id).status == "scan_error"
