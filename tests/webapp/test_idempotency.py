"""Idempotency-Key on the API's state-changing routes (webapp/idempotency.py), with
Stripe's semantics: a retry gets the first answer and changes nothing; the same key on
another request is 422; while the first runs, 409."""
from __future__ import annotations

import datetime as dt
import io
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import LargeBinary, func, select, type_coerce, update

from deliveries.models import Destination
from documents.models import Document, Import
from store import idempotency
from store.db import utcnow
from store.idempotency import IdempotencyKey
from store.sealing import key_counts
from tests import services
from tests.documents import files
from tests.imports.archives import build
from tests.outcomes.test_event_feed import token
from webapp.extensions import db
from webapp.models import metadata

LOCAL = {"allowed_networks": ["127.0.0.0/8"], "allow_http": True}
SAFE = {"GET", "HEAD", "OPTIONS"}


def destination_body(name="shop", url="http://127.0.0.1:9/hook") -> dict:
    return {"name": name, "url": url, "events": ["payment.*"], **LOCAL}


def create(client, who, key, body):
    headers = {"Authorization": who["Authorization"]}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post("/v1/admin/destinations", json=body, headers=headers)


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def admin(app):
    return token(app, "ops", ["admin"])


def test_every_state_changing_v1_route_honours_the_key(app):
    routes = [(rule.rule, sorted(rule.methods - SAFE)) for rule in app.url_map.iter_rules()
              if rule.rule.startswith("/v1/") and rule.methods - SAFE]
    assert len(routes) >= 14
    for rule, methods in routes:
        view = app.view_functions[next(r.endpoint for r in app.url_map.iter_rules()
                                       if r.rule == rule)]
        assert getattr(view, "idempotent", False), (rule, methods)


def test_a_retry_gets_the_first_answer_and_creates_nothing(app, client, admin):
    first = create(client, admin, "k-1", destination_body())
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    again = create(client, admin, "k-1", destination_body())
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()  # the same id, and the same secret
    assert again.mimetype == "application/json"
    # key order and spacing are not a different request
    reordered = client.post("/v1/admin/destinations", data=(
        '{"allow_http": true, "allowed_networks": ["127.0.0.0/8"], "events": ["payment.*"],'
        '  "url": "http://127.0.0.1:9/hook", "name": "shop"}'),
        headers={"Authorization": admin["Authorization"], "Idempotency-Key": "k-1",
                 "Content-Type": "application/json"})
    assert reordered.status_code == 201 and reordered.get_json() == first.get_json()
    assert count(app, Destination) == 1
    # without a key, each request is its own
    assert create(client, admin, None, destination_body()).status_code == 201
    assert count(app, Destination) == 2


def test_the_kept_answer_is_sealed(app, client, admin):
    secret = create(client, admin, "sealed", destination_body()).get_json()["secret"]
    with app.app_context():  # as stored, past the column's sealing
        kept = db.session.scalar(select(type_coerce(IdempotencyKey.response, LargeBinary)))
        counts = key_counts(db.session, metadata)["idempotency_keys.response"]
    assert secret.encode() not in kept and b"shop" not in kept
    assert counts == {services.DATA_KEYS.split(":")[0]: 1}


def test_the_same_key_on_another_request_is_422_and_runs_nothing(app, client, admin):
    assert create(client, admin, "k-2", destination_body()).status_code == 201
    other_body = create(client, admin, "k-2", destination_body(name="other"))
    assert other_body.status_code == 422
    error = other_body.get_json()["error"]
    assert error["code"] == "idempotency_key_reused"
    assert "different body" in error["message"]
    other_route = client.post("/v1/admin/jobs/purge_retention/run",
                              headers={"Authorization": admin["Authorization"],
                                       "Idempotency-Key": "k-2"})
    assert other_route.status_code == 422
    assert "POST /v1/admin/destinations" in other_route.get_json()["error"]["message"]
    assert count(app, Destination) == 1


def test_keys_belong_to_their_client(app, client, admin):
    other = token(app, "other-ops", ["admin"])
    mine = create(client, admin, "shared", destination_body()).get_json()
    theirs = create(client, other, "shared", destination_body())
    assert theirs.status_code == 201 and "Idempotent-Replayed" not in theirs.headers
    assert theirs.get_json()["id"] != mine["id"]


@pytest.mark.parametrize("key", ["", "x" * 256, "bad\x01key", "tab\tkey"])
def test_a_malformed_key_is_400_and_runs_nothing(app, client, admin, key):
    response = create(client, admin, key, destination_body())
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_idempotency_key"
    assert count(app, Destination) == 0


def test_a_path_longer_than_its_column_is_still_a_plain_answer(app, client, admin):
    response = client.post("/v1/admin/jobs/" + "j" * 600 + "/run", headers={
        "Authorization": admin["Authorization"], "Idempotency-Key": "long-path"})
    assert response.status_code == 404


def test_a_longest_key_is_accepted(app, client, admin):
    assert create(client, admin, "é" + "k" * 254, destination_body()).status_code == 201


def test_a_4xx_is_not_kept_so_a_corrected_request_may_use_the_key(app, client, admin):
    bad = create(client, admin, "fix-me", {**destination_body(), "url": "ftp://nowhere"})
    assert bad.status_code == 400
    good = create(client, admin, "fix-me", destination_body())
    assert good.status_code == 201 and "Idempotent-Replayed" not in good.headers
    assert count(app, Destination) == 1


def test_a_5xx_is_not_kept_so_a_retry_runs_again(app, client, admin, monkeypatch):
    from deliveries import destinations

    real, calls = destinations.create, []

    def fails_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the database went away mid-request")
        return real(*args, **kwargs)
    monkeypatch.setattr(destinations, "create", fails_once)
    failed = create(client, admin, "after-500", destination_body())
    assert failed.status_code == 500
    assert failed.get_json()["error"]["code"] == "internal_error"
    retried = create(client, admin, "after-500", destination_body())
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried.headers
    assert count(app, Destination) == 1 and len(calls) == 2


@pytest.fixture
def pooled_app(committing_app):
    """An app on an engine of its own (the `app` fixture shares one connection, which
    concurrent requests cannot)."""
    return committing_app("idempotency_race", DATABASE_POOL_SIZE=25)


def test_twenty_simultaneous_posts_with_one_key_have_one_effect(pooled_app):
    app, racers = pooled_app, 20
    admin = token(app, "ops", ["admin"])
    start = threading.Barrier(racers)

    def racer(_):
        client = app.test_client()
        start.wait()
        response = create(client, admin, "race", destination_body())
        return response.status_code, response.get_json(), response.headers

    with ThreadPoolExecutor(racers) as pool:
        results = list(pool.map(racer, range(racers)))
    statuses = sorted(status for status, _, _ in results)
    assert set(statuses) <= {201, 409}, statuses
    created = [body for status, body, _ in results if status == 201]
    assert created and all(body == created[0] for body in created)
    for status, body, headers in results:
        if status == 409:
            assert body["error"]["code"] == "idempotency_key_in_use"
            assert headers["Retry-After"] == "1"
    assert count(app, Destination) == 1
    client = app.test_client()
    later = create(client, admin, "race", destination_body())
    assert later.status_code == 201 and later.get_json() == created[0]
    assert later.headers["Idempotent-Replayed"] == "true"


def test_a_claim_left_by_a_dead_request_is_taken_over_after_the_lease(app):
    with app.app_context():
        session, hours = db.session, dt.timedelta(hours=24)
        first = idempotency.claim(session, 1, "k", "POST", "/v1/x", "f", hours)
        assert isinstance(first, idempotency.Claimed)
        held = idempotency.claim(session, 1, "k", "POST", "/v1/x", "f", hours)
        assert isinstance(held, idempotency.Held) and held.response_status is None
        session.execute(update(IdempotencyKey).values(
            created_at=utcnow() - idempotency.RUNNING_LEASE - dt.timedelta(seconds=1)))
        session.commit()
        taken = idempotency.claim(session, 1, "k", "POST", "/v1/x", "f", hours)
        assert taken == first
        idempotency.finish(session, taken, 201, b"sealed")
        # an expired key is a new key: even a different request may use it
        session.execute(update(IdempotencyKey).values(
            expires_at=utcnow() - dt.timedelta(seconds=1)))
        session.commit()
        renewed = idempotency.claim(session, 1, "k", "DELETE", "/v1/y", "g", hours)
        assert isinstance(renewed, idempotency.Claimed)
        assert session.scalar(select(IdempotencyKey.response_status)) is None


def test_an_expired_key_runs_its_request_again(app, client, admin):
    first = create(client, admin, "old", destination_body()).get_json()
    with app.app_context():
        db.session.execute(update(IdempotencyKey).values(
            expires_at=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)))
        db.session.commit()
    again = create(client, admin, "old", destination_body())
    assert again.status_code == 201 and again.get_json()["id"] != first["id"]


# --- uploads: the body is fingerprinted by the spool's SHA-256 -------------------

def owner(app) -> dict:
    return token(app, "uploader", ["documents:read", "documents:write", "imports:write"])


def post_file(client, who, key, content, name="a.pdf", **headers):
    return client.post("/v1/documents", content_type="multipart/form-data",
                       data={"file": (io.BytesIO(content), name)},
                       headers={"Authorization": who["Authorization"],
                                "Idempotency-Key": key, **headers})


def test_a_retried_upload_is_replayed_and_another_file_is_422(app, client):
    who, pdf = owner(app), files.pdf("keyed")
    first = post_file(client, who, "up-1", pdf)
    assert first.status_code == 201
    again = post_file(client, who, "up-1", pdf)  # a new multipart boundary, same file
    assert again.status_code == 201 and again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    renamed = post_file(client, who, "up-1", pdf, name="b.pdf")
    assert renamed.status_code == 422
    other = post_file(client, who, "up-1", files.pdf("another"))
    assert other.status_code == 422
    raw = client.post("/v1/documents", data=pdf, content_type="application/pdf",
                      headers={"Authorization": who["Authorization"], "Idempotency-Key": "raw",
                               "Content-Disposition": "attachment; filename=a.pdf"})
    assert raw.status_code == 200  # the owner has these bytes already: not a key matter
    assert count(app, Document) == 1


def test_a_retried_import_is_replayed_with_its_first_answer(app, client):
    who = owner(app)
    archive = build([("a.pdf", files.pdf("in-archive"))])

    def send():
        return client.post("/v1/imports", content_type="multipart/form-data",
                           data={"archive": (io.BytesIO(archive), "batch.zip")},
                           headers={"Authorization": who["Authorization"],
                                    "Idempotency-Key": "import-1"})
    first = send()
    assert first.status_code == 202, first.get_json()
    again = send()
    assert again.status_code == 202 and again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count(app, Import) == 1
