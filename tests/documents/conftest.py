import io

import pytest

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
