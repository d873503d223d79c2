"""Row-level security (migration 0023), on PostgreSQL, under the application role the
whole suite's apps connect as (tests/services.py as_app_role): a transaction acting
for one owner sees none of another owner's rows, whatever its SQL forgets to say, and
cannot write rows for another owner; the system (workers, admins) sees everything."""
from __future__ import annotations

import datetime as dt

import pytest
from flask import g
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from documents.models import Upload
from store import events
from store.db import utcnow
from tests import services
from tests.documents import files
from tests.documents.conftest import upload
from tests.imports import archives
from tests.imports.conftest import make_owners, post_import
from tests.imports.test_imports import run
from tests.outcomes.test_event_feed import token
from webapp.extensions import db

# every table with an owner (and import_rows, owned through its import)
OWNED = {"documents": "owner_id", "imports": "owner_id", "uploads": "owner_id",
         "destinations": "owner_id", "events": "owner_id", "legal_holds": "owner_id",
         "import_rows": "import_id"}


@pytest.fixture
def postgres_app(app):
    services.require_postgres()
    return app


def test_every_table_with_an_owner_has_forced_row_level_security(postgres_app):
    with postgres_app.app_context():
        owned = set(db.session.scalars(text(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = "
            "'public' AND column_name = 'owner_id'")))
        assert owned | {"import_rows"} == set(OWNED)  # a new owned table needs a policy
        rows = db.session.execute(text(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
            "(SELECT count(*) FROM pg_policies p WHERE p.tablename = c.relname) "
            "FROM pg_class c WHERE c.relname = ANY(:names) AND c.relkind = 'r'"),
            {"names": list(OWNED)}).all()
        who = db.session.execute(text(
            "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles "
            "WHERE rolname = current_user")).one()
    assert {name: (enabled, forced, policies > 0) for name, enabled, forced, policies in rows} \
        == {name: (True, True, True) for name in OWNED}
    assert who == (services.APP_ROLE, False, False)  # what binds the app, binds the suite


def owners_rows(app) -> dict:
    """Two owners, each with a document, an import and its rows, a direct upload, a
    destination and an event; and a payment's event, which no one owns."""
    client, owners = app.test_client(), make_owners(app)
    admin = token(app, "ops", ["admin"])
    with app.app_context():  # a payment's event: unowned
        events.record(db.session, events.PAYMENT_UPDATED, {"reference": "pi_1"})
        db.session.commit()
    for name, owner in owners.items():
        assert upload(client, owner, files.pdf(f"{name}'s")).status_code == 201
        job = post_import(client, owner, archives.build([(f"{name}.pdf", files.pdf(name))]))
        run(app, job.get_json()["id"])
        assert client.post("/v1/admin/destinations", headers={
            "Authorization": admin["Authorization"]}, json={
            "name": name, "url": "http://127.0.0.1:9/hook", "events": ["*"],
            "owner": owner["id"], "allowed_networks": ["127.0.0.0/8"],
            "allow_http": True}).status_code == 201
        with app.app_context():
            db.session.add(Upload(owner_id=owner["id"], object_name=f"up-{name}",
                                  filename="x.pdf", declared_type="application/pdf",
                                  size=1, url_expires_at=utcnow() + dt.timedelta(hours=1)))
            events.record(db.session, events.DOCUMENT_SCANNED, {"n": name}, owner["id"])
            db.session.commit()
    return owners


def seen(app, acting_for: int | None) -> dict[str, set]:
    """What plain SQL with no owner condition returns in a request acting for one."""
    with app.test_request_context():
        g.acting_owner = acting_for
        found = {table: set(db.session.scalars(text(f"SELECT {column} FROM {table}")))
                 for table, column in OWNED.items()}
        import_ids = set(db.session.scalars(text("SELECT id FROM imports")))
        db.session.rollback()
    found["import_rows"] = {"own" if i in import_ids else i for i in found["import_rows"]}
    return found


def test_acting_for_an_owner_shows_none_of_another_owners_rows(postgres_app):
    owners = owners_rows(postgres_app)
    alice, bob = owners["alice"]["id"], owners["bob"]["id"]
    everything = seen(postgres_app, None)
    assert {alice, bob} <= everything["documents"]
    for owner, other in ((alice, bob), (bob, alice)):
        visible = seen(postgres_app, owner)
        for table in ("documents", "imports", "uploads", "destinations"):
            assert visible[table] == {owner}, table
        assert visible["events"] == {owner, None}  # unowned events are everyone's (by scope)
        assert visible["import_rows"] == {"own"}


def test_acting_for_an_owner_cannot_write_another_owners_rows(postgres_app):
    owners = owners_rows(postgres_app)
    alice, bob = owners["alice"]["id"], owners["bob"]["id"]
    with postgres_app.test_request_context():
        g.acting_owner = alice
        changed = db.session.execute(text("UPDATE documents SET filename = 'mine' "
                                          "WHERE owner_id = :bob"), {"bob": bob}).rowcount
        assert changed == 0  # invisible, so untouched
        with pytest.raises(DatabaseError, match="row-level security"):
            with db.session.begin_nested():
                db.session.execute(text("UPDATE documents SET owner_id = :bob"), {"bob": bob})
        db.session.rollback()


def test_the_api_works_for_owners_under_row_level_security(postgres_app):
    """The API as an owner uses it, with every transaction acting for that owner."""
    owners = owners_rows(postgres_app)
    listed = postgres_app.test_client().get(
        "/v1/documents", headers={"Authorization": owners["alice"]["Authorization"]})
    assert listed.status_code == 200
    assert {d["filename"] for d in listed.get_json()["documents"]} == {"doc.pdf", "alice.pdf"}
