import hashlib
import re

import pytest
from flask import Blueprint, g
from sqlalchemy import event, select, text

from webapp.auth import ApiClient, require_scopes
from webapp.extensions import db

protected = Blueprint("protected", __name__)


@protected.get("/_test/protected")
@require_scopes("documents:write")
def protected_view():
    return {"client": g.client.name}


@pytest.fixture
def app(make_app):
    app = make_app()
    app.register_blueprint(protected)
    return app


def create(runner, name, scopes) -> str:
    result = runner.invoke(args=["clients", "create", name, "--scopes", scopes])
    assert result.exit_code == 0, result.output
    return re.search(r"token \(store it now, it is not shown again\): (\S+)",
                     result.output).group(1)


def test_create_prints_the_token_once_and_stores_only_its_hash(app, runner):
    token = create(runner, "uploader", "documents:write,documents:read")
    with app.app_context():
        row = db.session.scalar(select(ApiClient).where(ApiClient.name == "uploader"))
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert row.scope_set == {"documents:write", "documents:read"}
        dumped = db.session.execute(text("SELECT * FROM api_clients")).all()
    assert token not in repr(dumped)
    listing = runner.invoke(args=["clients", "list"]).output
    assert "uploader" in listing and token not in listing


def test_duplicate_names_and_unknown_scopes_are_refused(runner):
    create(runner, "dup", "admin")
    again = runner.invoke(args=["clients", "create", "dup", "--scopes", "admin"])
    assert again.exit_code != 0 and "already exists" in again.output
    bad = runner.invoke(args=["clients", "create", "other", "--scopes", "root"])
    assert bad.exit_code != 0 and "unknown scopes: root" in bad.output


def test_bearer_auth_checks_token_and_scopes(client, runner):
    good = create(runner, "writer", "documents:write")
    reader = create(runner, "reader", "documents:read")

    missing = client.get("/_test/protected")
    assert missing.status_code == 401
    assert missing.get_json()["error"]["code"] == "missing_token"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")

    wrong = client.get("/_test/protected", headers={"Authorization": "Bearer slc_nope"})
    assert wrong.status_code == 401 and wrong.get_json()["error"]["code"] == "invalid_token"

    scoped = client.get("/_test/protected", headers={"Authorization": f"Bearer {reader}"})
    assert scoped.status_code == 403
    assert scoped.get_json()["error"]["code"] == "insufficient_scope"

    ok = client.get("/_test/protected", headers={"Authorization": f"Bearer {good}"})
    assert ok.status_code == 200 and ok.get_json() == {"client": "writer"}

    assert runner.invoke(args=["clients", "revoke", "writer"]).exit_code == 0
    revoked = client.get("/_test/protected", headers={"Authorization": f"Bearer {good}"})
    assert revoked.status_code == 401


def test_an_unknown_token_and_a_near_miss_of_a_real_one_are_indistinguishable(app, runner):
    """No timing or answer difference to learn from: both are one lookup of a
    SHA-256 by the same statement, with no comparison of the secret in Python."""
    real = create(runner, "writer", "documents:write")
    near_miss = real[:-1] + ("A" if real[-1] != "A" else "B")
    unknown = "slc_" + "Z" * (len(real) - 4)
    engine = app.extensions["sluice.db"].engine

    def attempt(token: str):
        statements = []

        def record(conn, cursor, statement, parameters, context, executemany):
            # the test's rolled-back transaction numbers its savepoints
            statements.append(re.sub(r"sa_savepoint_\d+", "sa_savepoint", statement))
        event.listen(engine, "before_cursor_execute", record)
        try:
            response = app.test_client().get("/_test/protected", headers={
                "Authorization": f"Bearer {token}", "X-Request-Id": "same-request-id"})
        finally:
            event.remove(engine, "before_cursor_execute", record)
        return response.status_code, response.get_json(), dict(response.headers), statements

    status, body, headers, statements = attempt(near_miss)
    assert (status, body["error"]["code"]) == (401, "invalid_token")
    assert attempt(unknown) == (status, body, headers, statements)
    assert [s for s in statements if "api_clients" in s and "token_hash" in s]


def test_failed_authentication_spends_per_address_and_per_token_budgets_never_a_valid_one(
        make_app):
    app = make_app(AUTH_FAILURE_LIMIT="3/minute")
    client = app.test_client()
    token = create(app.test_cli_runner(), "reader", "documents:read")
    good = {"Authorization": f"Bearer {token}"}
    bad, other_bad = ({"Authorization": "Bearer slc_guess"},
                      {"Authorization": "Bearer slc_another-guess"})
    attacker, neighbour = {"REMOTE_ADDR": "203.0.113.9"}, {"REMOTE_ADDR": "198.51.100.7"}
    for _ in range(5):  # successful calls spend nothing
        assert client.get("/v1/documents", headers=good,
                          environ_base=attacker).status_code == 200
    answers = [client.get(path, headers=bad, environ_base=attacker).status_code
               for path in ("/v1/documents", "/v1/imports/1", "/v1/admin/jobs", "/v1/documents")]
    assert answers == [401, 401, 401, 429]
    # Everyone behind that address (a front without TRUSTED_PROXY_COUNT) with a valid
    # token still gets in: the lockout is for bad tokens.
    assert client.get("/v1/documents", headers=good, environ_base=attacker).status_code == 200
    limited = client.get("/v1/documents", headers=other_bad, environ_base=attacker)
    assert limited.status_code == 429 and "Retry-After" in limited.headers
    assert limited.get_json()["error"]["code"] == "rate_limited"
    # The same bad token from another address has spent its own budget...
    assert client.get("/v1/documents", headers=bad, environ_base=neighbour).status_code == 429
    # ...and another bad token from there is an ordinary failure.
    assert client.get("/v1/documents", headers=other_bad,
                      environ_base=neighbour).status_code == 401
