import io
import os

import pytest

from tests.services import MotoS3
from webapp.auth import create_client
from webapp.extensions import db


@pytest.fixture
def owners(app):
    """Two owners, each with a bearer token that may upload and read."""
    return make_owners(app)


def make_owners(app) -> dict:
    tokens = {}
    with app.app_context():
        for name in ("alice", "bob"):
            client, token = create_client(db.session, name, ["documents:read",
                                                             "documents:write"])
            tokens[name] = {"Authorization": f"Bearer {token}", "id": client.id}
        db.session.commit()
    return tokens


def upload(client, owner, content: bytes, filename="doc.pdf", content_type=None):
    headers = {"Authorization": owner["Authorization"]}
    data = {"file": (io.BytesIO(content), filename, content_type) if content_type
            else (io.BytesIO(content), filename)}
    return client.post("/v1/documents", data=data, headers=headers,
                       content_type="multipart/form-data")


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    server = MotoS3(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(moto, monkeypatch, tmp_path):
    """(settings for an s3:// STORAGE_URL on a new bucket of moto's server, the bucket)."""
    for name, value in MotoS3.ENV.items():
        monkeypatch.setenv(name, value)
    bucket = moto.bucket(f"b{os.urandom(4).hex()}")
    return {"STORAGE_URL": f"s3://{bucket}/pre", "S3_ENDPOINT_URL": moto.endpoint,
            "SPOOL_DIR": str(tmp_path / "spool")}, bucket
