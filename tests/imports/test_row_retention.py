"""RETENTION_IMPORT_ROWS_DAYS: a finished import keeps its counts; its rows that name
no document go (cron/retention.py, documents/imports.py: expire_rows)."""
import datetime as dt

from sqlalchemy import select, update

from documents.models import Document, Import, ImportRow
from store.db import utcnow
from tests.documents import files
from tests.documents.conftest import upload
from tests.helpers.jobs import run_now
from tests.imports import archives
from tests.imports.conftest import post_import
from tests.imports.test_imports import counts, errors_csv, run, status
from webapp.extensions import db


def purge(app) -> dict:
    return run_now(app, "purge_retention")


def imported(app, client, owner, entries) -> int:
    created = post_import(client, owner, archives.build(entries))
    assert created.status_code == 202
    run(app, created.get_json()["id"])
    return created.get_json()["id"]


def entries_left(app, import_id) -> list[tuple[str, str]]:
    with app.app_context():
        return [(row.entry_name, row.outcome) for row in db.session.scalars(
            select(ImportRow).where(ImportRow.import_id == import_id).order_by(ImportRow.row_no))]


def test_an_old_import_keeps_its_counts_and_the_rows_naming_documents(app, client, owners):
    alice = owners["alice"]
    auth = {"Authorization": alice["Authorization"]}
    existing = files.pdf("uploaded before")
    assert upload(client, alice, existing, "old.pdf").status_code == 201
    old = imported(app, client, alice, [
        ("q1.pdf", files.pdf("q1")), ("again.pdf", existing),      # ok, duplicate
        ("../escape.txt", b"traversal"), ("gone.pdf", files.pdf("deleted later"))])
    recent = imported(app, client, alice, [("../recent.txt", b"traversal")])
    gone = next(row.document_id for row in _rows(app, old) if row.entry_name == "gone.pdf")
    assert client.delete(f"/v1/documents/{gone}", headers=auth).status_code == 204
    before = counts(status(client, alice, old))
    assert before == {"status": "completed_with_errors", "total": 4, "processed": 4,
                      "succeeded": 2, "duplicates": 1, "rejected": 1, "infected": 0}
    with app.app_context():
        db.session.execute(update(Import).where(Import.id == old).values(
            finished_at=utcnow() - dt.timedelta(days=91)))
        db.session.commit()

    assert purge(app)["import_rows_deleted"] == 2  # the rejected row, the deleted document's
    assert entries_left(app, old) == [("q1.pdf", "ok"), ("again.pdf", "duplicate")]
    assert counts(status(client, alice, old)) == before
    expired = client.get(f"/v1/imports/{old}/errors.csv", headers=auth)
    assert expired.status_code == 410
    assert expired.get_json()["error"]["code"] == "report_expired"
    assert [row[2] for row in errors_csv(client, alice, recent)[1:]] == ["../recent.txt"]
    assert purge(app)["import_rows_deleted"] == 0  # expired once
    # the rows left still say which documents the import made
    assert client.delete(f"/v1/imports/{old}?documents=true", headers=auth).status_code == 204
    with app.app_context():
        names = set(db.session.scalars(select(Document.sha256)))
    assert len(names) == 0  # q1 and the duplicated upload both went with the import


def test_running_imports_and_a_zero_setting_keep_every_row(make_app):
    app = make_app(RETENTION_IMPORT_ROWS_DAYS=0)
    with app.app_context():
        db.session.add(Import(owner_id=1, archive_sha256="a" * 64, archive_size=1,
                              status="completed", finished_at=utcnow() - dt.timedelta(days=900)))
        db.session.add(Import(owner_id=1, archive_sha256="b" * 64, archive_size=1,
                              status="running", finished_at=None))
        db.session.commit()
        ids = list(db.session.scalars(select(Import.id).order_by(Import.id)))
        for import_id in ids:
            db.session.add(ImportRow(import_id=import_id, row_no=1, outcome="rejected",
                                     code="unsafe_name"))
        db.session.commit()
    assert purge(app)["import_rows_deleted"] == 0
    app.config["RETENTION_IMPORT_ROWS_DAYS"] = 90
    assert purge(app)["import_rows_deleted"] == 1  # the finished one's; never a running one's
    with app.app_context():
        assert list(db.session.scalars(select(ImportRow.import_id))) == [ids[1]]


def _rows(app, import_id):
    with app.app_context():
        return db.session.scalars(select(ImportRow).where(ImportRow.import_id == import_id)
                                  .order_by(ImportRow.row_no)).all()
