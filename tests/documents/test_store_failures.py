"""Every way an object store fails on the request path is a 503 with Retry-After, in
bounded time, with nothing committed and nothing left in the spool: refused, hung,
a 5xx answer, a missing bucket (which boto3's upload_file reports as
S3UploadFailedError, not as a ClientError)."""
import os
import time

import pytest
from sqlalchemy import func, select

from documents.models import Document
from tests.documents import files
from tests.documents.conftest import make_owners, upload
from tests.fakes.broken_store import FailingStore, HungStore
from tests.services import MotoS3, free_port
from webapp.extensions import db

TIMEOUT = 2.0  # STORAGE_REQUEST_TIMEOUT for these apps


@pytest.fixture(params=["refused", "hung", "server_error", "missing_bucket"])
def broken_store(request, moto, monkeypatch):
    for name, value in MotoS3.ENV.items():
        monkeypatch.setenv(name, value)
    if request.param == "refused":
        yield request.param, "s3://bucket/x", f"http://127.0.0.1:{free_port()}"
    elif request.param == "hung":
        store = HungStore()
        yield request.param, "s3://bucket/x", store.endpoint
        store.stop()
    elif request.param == "server_error":
        store = FailingStore()
        yield request.param, "s3://bucket/x", store.endpoint
        store.stop()
    else:  # a bucket deleted, or not yet recreated: the store answers, the bucket is gone
        yield request.param, f"s3://gone{os.urandom(4).hex()}/x", moto.endpoint


def test_an_upload_the_store_fails_is_503_with_retry_after_and_commits_nothing(
        make_app, tmp_path, broken_store):
    kind, url, endpoint = broken_store
    app = make_app(STORAGE_URL=url, S3_ENDPOINT_URL=endpoint, SPOOL_DIR=str(tmp_path / "spool"),
                   STORAGE_REQUEST_TIMEOUT=TIMEOUT)
    client = app.test_client()
    token = make_owners(app)["alice"]
    started = time.monotonic()
    response = upload(client, token, files.pdf(f"store {kind}"))
    took = time.monotonic() - started
    assert response.status_code == 503, (kind, response.get_json())
    assert response.headers["Retry-After"].isdigit()
    assert response.get_json()["error"]["code"] == "storage_unavailable"
    # two calls at most (HEAD, then the PUT) within the budget each, and some slack
    assert took < 2 * TIMEOUT + 3, (kind, took)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Document)) == 0
    assert os.listdir(tmp_path / "spool") == []
