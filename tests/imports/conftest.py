import io

import pytest

from webapp.auth import create_client
from webapp.extensions import db

SCOPES = ["documents:read", "documents:write", "imports:write"]


@pytest.fixture
def owners(app):
    """Two owners whose tokens may upload documents and imports."""
    return make_owners(app)


@pytest.fixture
def client_factory():
    """For tests that build their own app: (its test client, alice)."""
    return lambda app: (app.test_client(), make_owners(app)["alice"])


def make_owners(app) -> dict:
    tokens = {}
    with app.app_context():
        for name in ("alice", "bob"):
            client, token = create_client(db.session, name, SCOPES)
            tokens[name] = {"Authorization": f"Bearer {token}", "id": client.id}
        db.session.commit()
    return tokens


def post_import(client, owner, archive: bytes, manifest: bytes | None = None,
                manifest_name: str = "manifest.csv", archive_name: str = "batch.zip"):
    data = {"archive": (io.BytesIO(archive), archive_name)}
    if manifest is not None:
        data["manifest"] = (io.BytesIO(manifest), manifest_name)
    return client.post("/v1/imports", data=data, content_type="multipart/form-data",
                       headers={"Authorization": owner["Authorization"]})
