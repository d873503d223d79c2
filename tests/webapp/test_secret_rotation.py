"""A SECRET_KEY rotation: with the old key in SECRET_KEY_PREVIOUS, what it signed still
verifies (download links, console sessions) while new
ones are signed with the new key; once it is dropped, they stop verifying."""
from __future__ import annotations

from documents.models import Document
from tests.documents.conftest import make_owners, upload
from tests.documents.files import pdf
from tests.outcomes.test_event_feed import token
from tests.webapp.test_ops import operator, ops_app, sign_in, token_for, webhook_env  # noqa: F401,E501
from webapp.extensions import db

OLD, NEW = "the-old-secret-key-" + "o" * 20, "the-new-secret-key-" + "n" * 20


def rotate(app, previous: list[str]) -> None:
    app.config.update(SECRET_KEY=NEW, SECRET_KEY_FALLBACKS=previous)


def test_a_download_link_minted_before_the_rotation_still_serves(make_app):
    app = make_app(SECRET_KEY=OLD)
    client, alice = app.test_client(), make_owners(app)["alice"]
    document_id = upload(client, alice, pdf("rotated")).get_json()["id"]
    with app.app_context():
        db.session.get(Document, document_id).status = "clean"
        db.session.commit()
    link = client.post(f"/v1/documents/{document_id}/download-url",
                       headers={"Authorization": alice["Authorization"]}).get_json()["url"]
    rotate(app, [OLD])
    assert client.get(link).status_code == 200
    fresh = client.post(f"/v1/documents/{document_id}/download-url",
                        headers={"Authorization": alice["Authorization"]}).get_json()["url"]
    rotate(app, [])
    assert client.get(link).status_code == 403  # the old key is gone: so is its link
    assert client.get(fresh).status_code == 200


def test_a_console_session_survives_the_rotation_and_moves_to_the_new_key(  # noqa: F811
        ops_app, operator):  # noqa: F811
    idle = ops_app.test_client()
    assert sign_in(idle, token_for(ops_app, "bob-oncall", ["admin"])).status_code == 303
    old = ops_app.config["SECRET_KEY"]
    rotate(ops_app, [old])
    assert operator.get("/ops/").status_code == 200  # its cookie comes back signed anew
    rotate(ops_app, [])
    assert operator.get("/ops/").status_code == 200
    assert idle.get("/ops/").status_code == 303  # not seen during the rotation: signed out


def test_a_kept_idempotent_answer_does_not_depend_on_the_secret_key(make_app):
    """Kept answers are sealed under DATA_KEYS (store/sealing.py), not SECRET_KEY: a
    rotation that has dropped the old SECRET_KEY still replays them."""
    app = make_app(SECRET_KEY=OLD)
    client, admin = app.test_client(), token(app, "ops", ["admin"])

    def run_job():
        return client.post("/v1/admin/jobs/purge_retention/run", headers={
            "Authorization": admin["Authorization"], "Idempotency-Key": "rotating"})
    first = run_job()
    assert first.status_code == 202
    rotate(app, [])
    replayed = run_job()
    assert replayed.status_code == 202 and replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.get_json() == first.get_json()
