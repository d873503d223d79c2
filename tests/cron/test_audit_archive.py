"""`flask audit export`: old audit entries go to the object store, checked, and only
then may leave the database; the database itself refuses any other deletion."""
import datetime as dt
import gzip
import hashlib
import io
import json

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import DBAPIError

from documents.storage.local import LocalStorage
from store.audit import AuditExport, AuditLog
from webapp.extensions import db

OLD = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture
def entries(app):
    """Five entries from January, two from now; their ids."""
    with app.app_context():
        rows = [AuditLog(at=OLD + dt.timedelta(days=n), actor="client:alice",
                         action="document.delete", subject_type="document", subject_id=str(n),
                         detail={"size": n}) for n in range(5)]
        rows += [AuditLog(actor="client:bob", action="document.link", subject_type="document",
                          subject_id=str(n), detail={}) for n in (10, 11)]
        db.session.add_all(rows)
        db.session.commit()
        return [row.id for row in rows]


def refused(app, statement) -> bool:
    with app.app_context():
        try:
            with db.session.begin_nested():
                db.session.execute(statement)
        except DBAPIError as exc:
            assert "append-only" in str(exc.orig)
            return True
        return False


def test_old_entries_are_exported_checked_and_only_then_deleted(app, entries):
    old, new = entries[:5], entries[5:]
    assert refused(app, delete(AuditLog).where(AuditLog.id == old[0]))  # not exported yet
    runner = app.test_cli_runner()
    result = runner.invoke(args=["audit", "export", "--before", "2026-06-01", "--delete"])
    assert result.exit_code == 0, result.output
    assert f"exported 5 entries (ids {old[0]}-{old[-1]})" in result.output
    assert "deleted 5 entries" in result.output

    with app.app_context():
        export = db.session.scalar(select(AuditExport))
        assert (export.entries, export.first_id, export.last_id, export.deleted) == \
            (5, old[0], old[-1], 5)
        stored = (LocalStorage(app.config["STORAGE_DIR"]).root / export.object_key).read_bytes()
        assert export.object_key.startswith("audit/audit-before-20260601T000000Z-")
        assert hashlib.sha256(stored).hexdigest() == export.sha256 == \
            result.output.split("sha256 ")[1].split(",")[0]
        lines = [json.loads(line) for line in gzip.open(io.BytesIO(stored))]
        assert [line["id"] for line in lines] == old
        assert lines[2] == {"id": old[2], "at": (OLD + dt.timedelta(days=2)).isoformat(),
                            "actor": "client:alice", "action": "document.delete",
                            "subject_type": "document", "subject_id": "2",
                            "detail": {"size": 2}}
        left = set(db.session.scalars(select(AuditLog.id)))
        assert set(new) <= left and not set(old) & left
        assert db.session.scalar(select(func.count()).select_from(AuditLog).where(
            AuditLog.action == "audit.export")) == 1  # the export is audited, and stays
    # what no export covers still cannot be deleted or changed
    assert refused(app, delete(AuditLog).where(AuditLog.id == new[0]))
    assert refused(app, update(AuditLog).where(AuditLog.id == new[0]).values(actor="x"))
    again = runner.invoke(args=["audit", "export", "--before", "2026-06-01"])
    assert again.exit_code == 0 and "no entry is older than 2026-06-01" in again.output
    listed = runner.invoke(args=["audit", "exports"])
    assert export_key_in(listed.output)


def export_key_in(output: str) -> bool:
    return "audit/audit-before-20260601T000000Z-" in output and "< 2026-06-01" in output


def test_an_export_the_store_does_not_give_back_intact_records_and_deletes_nothing(
        app, entries, monkeypatch):
    monkeypatch.setattr(LocalStorage, "open_named",
                        lambda self, key: io.BytesIO(b"not what was written"))
    result = app.test_cli_runner().invoke(
        args=["audit", "export", "--before", "2026-06-01", "--delete"])
    assert result.exit_code == 1
    assert "nothing recorded, nothing deleted" in result.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditExport)) == 0
        assert set(entries) <= set(db.session.scalars(select(AuditLog.id)))
    assert refused(app, delete(AuditLog).where(AuditLog.id == entries[0]))


def test_a_cut_in_the_future_is_refused(app, entries):
    tomorrow = (dt.date.today() + dt.timedelta(days=2)).isoformat()
    result = app.test_cli_runner().invoke(args=["audit", "export", "--before", tomorrow])
    assert result.exit_code == 2 and "must be in the past" in result.output
