"""Bulk imports against real PostgreSQL/SQLite, Redis, libmagic and clamd.

The import task's body (`run_import`) runs in the test process here; the Celery
wiring and a worker killed mid-import are covered end to end in tests/e2e.
"""
import csv
import io
import os
import re
import time
import tracemalloc

import pytest
from sqlalchemy import func, select

from documents.imports import ImportSettings, run_import
from documents.models import Document, ImportRow
from documents.reports import escape_cell
from documents.scanner import client_from_url
from documents.scanning import scan_document
from documents.storage.local import LocalStorage
from store.audit import AuditLog
from tests.documents import files
from tests.documents.conftest import upload
from tests.helpers.outbox import queued, relay
from tests.imports import archives
from tests.imports.conftest import post_import
from webapp.extensions import db

MB = 1024 * 1024


def run(app, import_id):
    with app.app_context():
        return run_import(db.session, LocalStorage(app.config["STORAGE_DIR"]), import_id,
                          ImportSettings.from_config(app.config))


def scan_pending(app, clamd_url):
    with app.app_context():
        scanner = client_from_url(clamd_url, timeout=10)
        pending = db.session.scalars(select(Document.id).where(
            Document.status == "pending_scan")).all()
        for document_id in pending:
            scan_document(db.session, LocalStorage(app.config["STORAGE_DIR"]), scanner,
                          document_id, 50 * MB)
            db.session.commit()


def status(client, owner, import_id):
    response = client.get(f"/v1/imports/{import_id}",
                          headers={"Authorization": owner["Authorization"]})
    assert response.status_code == 200
    return response.get_json()


def errors_csv(client, owner, import_id):
    response = client.get(f"/v1/imports/{import_id}/errors.csv",
                          headers={"Authorization": owner["Authorization"]})
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def counts(body):
    keys = ("status", "total", "processed", "succeeded", "duplicates", "rejected", "infected")
    return {key: body[key] for key in keys}


def rows(app, import_id):
    with app.app_context():
        return db.session.scalars(select(ImportRow).where(ImportRow.import_id == import_id)
                                  .order_by(ImportRow.row_no)).all()


def test_a_mixed_archive_gives_exact_counts_and_an_error_report(app, client, owners,
                                                                clamd_url, redis_db):
    alice = owners["alice"]
    existing = files.pdf("already uploaded")
    assert upload(client, alice, existing, "old.pdf").status_code == 201
    archive = archives.build([
        ("reports/q1.pdf", files.pdf("q1")),
        ("scan.png", files.png()),
        ("again.pdf", existing),                       # duplicate of an existing document
        ("eicar.txt", files.EICAR),                    # ingested, then found infected
        ("../escape.txt", b"traversal"),
        archives.symlink("passwd.txt", "/etc/passwd"),
        ("photo.png", files.pdf("not a png")),         # content contradicts the name
    ])
    manifest = archives.csv_manifest([
        {"filename": "reports/q1.pdf", "title": "Q1", "external_ref": "R-1", "tags": "a, b"},
        {"filename": "scan.png"}, {"filename": "again.pdf"}, {"filename": "eicar.txt"},
        {"filename": "../escape.txt"}, {"filename": "passwd.txt"}, {"filename": "photo.png"},
        {"filename": "missing.pdf", "title": "not in the archive"},
    ])
    created = post_import(client, alice, archive, manifest)
    assert created.status_code == 202
    assert created.get_json()["status"] == "queued"
    import_id = created.get_json()["id"]
    assert relay(app) == 2  # old.pdf's scan, and the import
    assert [m["kwargs"] for m in queued(redis_db, "imports")] == [{"import_id": import_id}]

    assert run(app, import_id) == "completed_with_errors"
    assert counts(status(client, alice, import_id)) == {
        "status": "completed_with_errors", "total": 8, "processed": 8, "succeeded": 3,
        "duplicates": 1, "rejected": 4, "infected": 0}
    scan_pending(app, clamd_url)
    body = status(client, alice, import_id)
    assert counts(body) == {
        "status": "completed_with_errors", "total": 8, "processed": 8, "succeeded": 2,
        "duplicates": 1, "rejected": 4, "infected": 1}
    assert body["percent"] == 100.0 and body["eta_seconds"] == 0.0
    assert body["started_at"] and body["finished_at"] and body["rows_per_second"] > 0

    report = errors_csv(client, alice, import_id)
    assert report[0] == ["row", "manifest_row", "entry", "code", "message"]
    assert [(r[0], r[1], r[2], r[3]) for r in report[1:]] == [
        ("4", "5", "eicar.txt", "infected"),
        ("5", "6", "../escape.txt", "unsafe_name"),
        ("6", "7", "passwd.txt", "symlink"),
        ("7", "8", "photo.png", "type_mismatch"),
        ("8", "9", "missing.pdf", "missing_file"),
    ]
    stored = rows(app, import_id)
    assert (stored[0].title, stored[0].external_ref, stored[0].tags) == ("Q1", "R-1", ["a", "b"])
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Document)
                                 .where(Document.owner_id == alice["id"])) == 4
        actions = db.session.scalars(select(AuditLog.action).where(
            AuditLog.subject_type == "import")).all()
        assert actions == ["import.create", "import.start", "import.finish"]


def test_the_same_archive_again_is_the_same_import_another_owner_cannot_see_it(
        app, client, owners):
    archive = archives.build([("a.pdf", files.pdf("a"))])
    first = post_import(client, owners["alice"], archive)
    again = post_import(client, owners["alice"], archive)
    assert first.status_code == 202 and again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"]
    bob = {"Authorization": owners["bob"]["Authorization"]}
    import_id = first.get_json()["id"]
    assert client.get(f"/v1/imports/{import_id}", headers=bob).status_code == 404
    assert client.get(f"/v1/imports/{import_id}/errors.csv", headers=bob).status_code == 404
    theirs = post_import(client, owners["bob"], archive)
    assert theirs.status_code == 202 and theirs.get_json()["id"] != import_id


def test_without_a_manifest_every_entry_is_a_row_and_junk_is_rejected(app, client, owners):
    archive = archives.mark_encrypted(archives.build([
        ("a.pdf", files.pdf("a")),
        ("dir/b.png", files.png()),
        ("__MACOSX/._a.pdf", b"resource fork"),
        (".DS_Store", b"finder"),
        ("a.pdf", files.pdf("second a")),             # duplicate name
        ("inner.zip", archives.build([("x.txt", b"x")])),
        ("locked.pdf", files.pdf("locked")),
        ("same.pdf", files.pdf("a")),                 # same bytes as a.pdf
    ]), "locked.pdf")
    import_id = post_import(client, owners["alice"], archive).get_json()["id"]
    assert run(app, import_id) == "completed_with_errors"
    assert [(r.entry_name, r.outcome, r.code) for r in rows(app, import_id)] == [
        ("a.pdf", "ok", None),
        ("dir/b.png", "ok", None),
        ("__MACOSX/._a.pdf", "rejected", "junk_entry"),
        (".DS_Store", "rejected", "junk_entry"),
        ("a.pdf", "rejected", "duplicate_name"),
        ("inner.zip", "rejected", "nested_archive"),
        ("locked.pdf", "rejected", "encrypted"),
        ("same.pdf", "duplicate", None),
    ]


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_manifests_with_a_bom_and_non_ascii_names(app, client, owners, kind):
    names = ["Überweisung März.pdf", "契約書.png", "naïve café.txt"]
    archive = archives.build([(names[0], files.pdf("ü")), (names[1], files.png()),
                              (names[2], "crème brûlée".encode())])
    manifest_rows = [{"filename": names[0], "title": "Überweisung", "tags": "bank;2026"},
                     {"filename": names[1], "title": "契約", "external_ref": "K-7"},
                     {"filename": names[2]}]
    manifest = (archives.csv_manifest(manifest_rows, bom=True) if kind == "csv"
                else archives.xlsx_manifest(manifest_rows))
    response = post_import(client, owners["alice"], archive, manifest, f"manifest.{kind}")
    assert response.status_code == 202, response.get_json()
    import_id = response.get_json()["id"]
    assert run(app, import_id) == "completed"
    assert [(r.entry_name, r.manifest_row, r.outcome, r.title, r.external_ref, r.tags)
            for r in rows(app, import_id)] == [
        (names[0], 2, "ok", "Überweisung", None, ["bank", "2026"]),
        (names[1], 3, "ok", "契約", "K-7", None),
        (names[2], 4, "ok", None, None, None),
    ]
    with app.app_context():
        assert sorted(db.session.scalars(select(Document.filename))) == sorted(names)


def test_a_manifest_inside_the_archive_is_used_and_is_not_a_document(app, client, owners):
    archive = archives.build([
        ("manifest.csv", archives.csv_manifest([{"filename": "a.pdf", "title": "A"}])),
        ("a.pdf", files.pdf("a")),
        ("unlisted.pdf", files.pdf("unlisted")),
    ])
    import_id = post_import(client, owners["alice"], archive).get_json()["id"]
    run(app, import_id)
    assert [(r.entry_name, r.outcome, r.code, r.title) for r in rows(app, import_id)] == [
        ("a.pdf", "ok", None, "A"),
        ("unlisted.pdf", "rejected", "unknown_file", None),
    ]


def test_bad_manifest_rows_are_reported_with_their_row_numbers(app, client, owners):
    archive = archives.build([("a.pdf", files.pdf("a")), ("b.pdf", files.pdf("b"))])
    manifest = archives.csv_manifest([
        {"filename": "a.pdf", "title": "ok"},
        {"filename": "", "title": "no filename"},
        {"filename": "b.pdf", "title": "x" * 300},
        {"filename": "a.pdf", "title": "listed twice"},
        {"filename": "b.pdf", "tags": ",".join(f"t{i}" for i in range(30))},
    ])
    import_id = post_import(client, owners["alice"], archive, manifest).get_json()["id"]
    run(app, import_id)
    report = errors_csv(client, owners["alice"], import_id)
    assert [(r[1], r[2], r[3]) for r in report[1:]] == [
        ("", "b.pdf", "unknown_file"),  # its only valid-looking rows were refused
        ("3", "", "invalid_row"),
        ("4", "b.pdf", "invalid_row"),
        ("5", "a.pdf", "duplicate_row"),
        ("6", "b.pdf", "invalid_row"),
    ]
    assert status(client, owners["alice"], import_id)["succeeded"] == 1  # b.pdf never listed ok


def test_the_error_report_escapes_spreadsheet_formulas(app, client, owners):
    hostile = ["=HYPERLINK(\"http://evil\").pdf", "+1.pdf", "-2.pdf", "@sum.pdf"]
    archive = archives.build([(name, b"%PDF-1.7 not really") for name in hostile]
                             + [("ok.pdf", files.pdf("ok"))])
    manifest = archives.csv_manifest([{"filename": "ok.pdf"}])
    import_id = post_import(client, owners["alice"], archive, manifest).get_json()["id"]
    run(app, import_id)
    entries = [r[2] for r in errors_csv(client, owners["alice"], import_id)[1:]]
    assert entries == ["'" + name for name in hostile]


def test_the_error_report_has_no_formula_whatever_separator_a_spreadsheet_reads_it_with(
        app, client, owners):
    # Manifest filenames that become formulas once a reader splits on ";" or a newline.
    hostile = ["a;=6+6", "x\n=14+14", "b\t@SUM(1)", "c|+1"]
    archive = archives.build([("ok.pdf", files.pdf("ok"))])
    manifest = archives.csv_manifest([{"filename": "ok.pdf"}]
                                     + [{"filename": name} for name in hostile])
    import_id = post_import(client, owners["alice"], archive, manifest).get_json()["id"]
    run(app, import_id)
    response = client.get(f"/v1/imports/{import_id}/errors.csv",
                          headers={"Authorization": owners["alice"]["Authorization"]})
    text = response.get_data(as_text=True)
    assert len(list(csv.reader(io.StringIO(text)))) == 1 + len(hostile)
    quoted_field = r'"(?:[^"]|"")*"'
    assert re.fullmatch(rf"(?:{quoted_field}(?:,{quoted_field})*\r\n)+", text)  # all quoted
    pieces = [piece.strip('"') for separator in (",", ";", "\t", "|")
              for row in csv.reader(io.StringIO(text), delimiter=separator, quoting=csv.QUOTE_NONE)
              for piece in row] + [line.strip('"') for line in text.splitlines()]
    assert [p for p in pieces if p.startswith(("=", "+", "-", "@"))] == []


@pytest.mark.parametrize("cell, escaped", [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@A1", "'@A1"), ("\tx", "'\tx"),
    ("\rx", "'\rx"), ("plain", "plain"), ("a=b", "a=b"), (7, 7), (None, ""),
    ("a;=6+6", "a;'=6+6"), ("x\n=14+14", "x\n'=14+14"), ("a,-1", "a,'-1"), ("a|@x", "a|'@x"),
])
def test_escape_cell(cell, escaped):
    assert escape_cell(cell) == escaped


def test_a_high_ratio_entry_is_rejected_quickly_with_bounded_memory(make_app, client_factory):
    app = make_app(IMPORT_MAX_RATIO=50.0)
    client, alice = client_factory(app)
    bomb = archives.ratio_bomb(256 * MB)  # 256 MiB of zeros in ~0.25 MiB
    import_id = post_import(client, alice, bomb).get_json()["id"]
    tracemalloc.start()
    started = time.monotonic()
    try:
        assert run(app, import_id) == "completed_with_errors"
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    elapsed = time.monotonic() - started
    assert [(r.outcome, r.code) for r in rows(app, import_id)] == [
        ("rejected", "compression_ratio")]
    assert elapsed < 10, elapsed
    assert peak < 16 * MB, peak
    temp = os.path.join(app.config["STORAGE_DIR"], "tmp")
    assert os.listdir(temp) == []


def test_overlapping_entries_and_too_many_entries_are_refused_at_upload(make_app,
                                                                        client_factory):
    app = make_app(IMPORT_MAX_ENTRIES=10)
    client, alice = client_factory(app)
    response = post_import(client, alice, archives.overlapping_bomb(copies=5))
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "unsafe_archive"
    many = archives.build([(f"{i}.txt", b"x") for i in range(11)])
    response = post_import(client, alice, many)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "too_many_entries"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ImportRow)) == 0


def test_the_total_size_is_counted_while_reading(make_app, client_factory):
    app = make_app(IMPORT_MAX_TOTAL_BYTES=MB)
    client, alice = client_factory(app)
    parts = [(f"part{i}.txt", os.urandom(400 * 1024).hex()[:400 * 1024].encode())
             for i in range(4)]
    import_id = post_import(client, alice, archives.build(parts)).get_json()["id"]
    run(app, import_id)
    assert [(r.outcome, r.code) for r in rows(app, import_id)] == [
        ("ok", None), ("ok", None), ("rejected", "total_size_exceeded"),
        ("rejected", "total_size_exceeded")]


@pytest.mark.parametrize("archive, manifest, name, status, code", [
    (None, None, None, 400, "missing_file"),
    (files.pdf("not a zip"), None, None, 415, "invalid_archive"),
    (b"PK\x03\x04 truncated", None, None, 415, "invalid_archive"),
    (archives.build([("a.pdf", b"x")]), files.png(), "manifest.csv", 415, "unsupported_type"),
    (archives.build([("a.pdf", b"x")]), archives.xlsx_shared_strings_bomb(1_000_000), "m.xlsx",
     400, "unsafe_manifest"),
    (archives.build([("a.pdf", b"x"),
                     ("manifest.xlsx", archives.xlsx_shared_strings_bomb(1_000_000))]),
     None, None, 400, "unsafe_manifest"),
])
def test_refused_uploads_store_nothing(app, client, owners, archive, manifest, name, status,
                                       code):
    headers = {"Authorization": owners["alice"]["Authorization"]}
    if archive is None:
        response = client.post("/v1/imports", headers=headers, data={},
                               content_type="multipart/form-data")
    else:
        response = post_import(client, owners["alice"], archive, manifest, name or "m.csv")
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]["code"] == code
    storage = app.config["STORAGE_DIR"]
    assert not os.path.exists(os.path.join(storage, "sha256"))
    temp = os.path.join(storage, "tmp")
    assert not os.path.exists(temp) or os.listdir(temp) == []


@pytest.mark.parametrize("archive, manifest", [
    (archives.build([("a.pdf", b"x")]), b"name,title\na.pdf,A\n"),
    (archives.build([("a.pdf", b"x")]), b"filename\n\xff\xfe bad\n"),
    (archives.build([("a.pdf", b"x"), ("manifest.csv", b"title\nx\n")]), None),
])
def test_a_manifest_is_parsed_by_the_import_task_never_by_the_request(app, client, owners,
                                                                      archive, manifest):
    response = post_import(client, owners["alice"], archive, manifest, "m.csv")
    assert response.status_code == 202, response.get_json()
    import_id = response.get_json()["id"]
    assert run(app, import_id) == "failed"
    body = status(client, owners["alice"], import_id)
    assert (body["status"], body["error"]["code"]) == ("failed", "invalid_manifest")


@pytest.mark.parametrize("where", ["separate", "inside"])
def test_an_xlsx_shared_strings_bomb_is_refused_at_upload_within_a_second(
        client, owners, where):
    # 1,000,000 shared strings: about 17 MB of XML in a few tens of KB. openpyxl took
    # 12 s of CPU for a 43 KB one, and hundreds of MB for a larger one.
    bomb = archives.xlsx_shared_strings_bomb(1_000_000)
    archive = archives.build([("a.pdf", b"x")] + ([("manifest.xlsx", bomb)]
                                                  if where == "inside" else []))
    tracemalloc.start()
    started = time.perf_counter()
    try:
        response = post_import(client, owners["alice"], archive,
                               bomb if where == "separate" else None, "m.xlsx")
        seconds, (_, peak) = time.perf_counter() - started, tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "unsafe_manifest"
    assert seconds < 1.0 and peak < 16 * MB, (seconds, peak)


def test_the_import_task_refuses_an_xlsx_bomb_itself(tmp_path):
    from documents.manifests import InvalidManifest, read_manifest

    path = tmp_path / "m.xlsx"
    path.write_bytes(archives.xlsx_shared_strings_bomb(1_000_000))
    started = time.perf_counter()
    with pytest.raises(InvalidManifest) as refused:
        list(read_manifest(path, "xlsx", 20000))
    assert refused.value.code == "unsafe_manifest"
    assert time.perf_counter() - started < 1.0


def test_a_sheet_that_runs_past_the_row_cap_fails_the_import_quickly(app, client, owners):
    # One cell at row 1,000,000: a few hundred bytes, and a million empty rows to openpyxl.
    archive = archives.build([("a.pdf", files.pdf("far"))])
    response = post_import(client, owners["alice"], archive, archives.xlsx_far_row(1_000_000),
                           "m.xlsx")
    assert response.status_code == 202, response.get_json()
    started = time.perf_counter()
    assert run(app, response.get_json()["id"]) == "failed"
    assert time.perf_counter() - started < 2.0
    body = status(client, owners["alice"], response.get_json()["id"])
    assert body["error"]["code"] == "manifest_too_long"


def test_an_archive_over_the_cap_is_413(make_app, client_factory):
    app = make_app(IMPORT_MAX_BYTES=MB)
    client, alice = client_factory(app)
    big = archives.build([("noise.txt", os.urandom(2 * MB))], compression=0)
    response = post_import(client, alice, big)
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


def test_imports_need_the_imports_scope(client, owners, app):
    from webapp.auth import create_client

    with app.app_context():
        _, token = create_client(db.session, "reader", ["documents:read"])
        db.session.commit()
    response = post_import(client, {"Authorization": f"Bearer {token}"},
                           archives.build([("a.pdf", files.pdf())]))
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "insufficient_scope"


def test_a_crashed_import_resumes_without_redoing_rows(make_app, client_factory, monkeypatch):
    app = make_app(IMPORT_BATCH_SIZE=3)
    client, alice = client_factory(app)
    archive = archives.build([(f"{i}.pdf", files.pdf(f"doc {i}")) for i in range(10)])
    import_id = post_import(client, alice, archive).get_json()["id"]

    import documents.imports as imports

    real, calls = imports.create_document, []

    def dies_on_the_eighth(*args, **kwargs):  # stands in for the worker being killed
        calls.append(1)
        if len(calls) == 8:
            raise RuntimeError("worker lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(imports, "create_document", dies_on_the_eighth)
    with pytest.raises(RuntimeError):
        run(app, import_id)
    with app.app_context():
        db.session.rollback()
    assert len(rows(app, import_id)) == 6  # two batches of three were committed
    assert status(client, alice, import_id)["status"] == "running"
    monkeypatch.setattr(imports, "create_document", real)
    assert run(app, import_id) == "completed"
    assert [r.row_no for r in rows(app, import_id)] == list(range(1, 11))
    assert counts(status(client, alice, import_id)) == {
        "status": "completed", "total": 10, "processed": 10, "succeeded": 10,
        "duplicates": 0, "rejected": 0, "infected": 0}
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Document)) == 10


def test_progress_never_says_queued_once_rows_exist(app, client, owners):
    # A job row read before the worker started, its rows counted after: running.
    import_id = post_import(client, owners["alice"],
                            archives.build([("a.pdf", files.pdf("q"))])).get_json()["id"]
    with app.app_context():
        db.session.add(ImportRow(import_id=import_id, row_no=1, entry_name="a.pdf",
                                 outcome="rejected", code="x", message="x"))
        db.session.commit()
    body = status(client, owners["alice"], import_id)
    assert (body["status"], body["processed"]) == ("running", 1)


def test_a_manifests_metadata_reaches_the_documents_and_their_filters(app, client, owners):
    archive = archives.build([("march.pdf", files.pdf("4471")), ("april.pdf", files.pdf("4472")),
                              ("plain.txt", b"no metadata\n")])
    manifest = archives.csv_manifest([
        {"filename": "march.pdf", "title": "Invoice March", "external_ref": "INV-4471",
         "tags": "invoice;2026"},
        {"filename": "april.pdf", "title": "Invoice April", "tags": "invoice"},
        {"filename": "plain.txt"}])
    import_id = post_import(client, owners["alice"], archive, manifest).get_json()["id"]
    assert run(app, import_id) == "completed"
    alice = {"Authorization": owners["alice"]["Authorization"]}

    def listed(query: str) -> list[str]:
        answer = client.get(f"/v1/documents?{query}", headers=alice)
        assert answer.status_code == 200, answer.get_json()
        return sorted(d["filename"] for d in answer.get_json()["documents"])

    march = next(d for d in client.get("/v1/documents", headers=alice).get_json()["documents"]
                 if d["filename"] == "march.pdf")
    one = client.get(f"/v1/documents/{march['id']}", headers=alice).get_json()
    assert (one["title"], one["external_ref"], one["tags"]) == (
        "Invoice March", "INV-4471", ["2026", "invoice"])
    assert listed("tag=invoice") == ["april.pdf", "march.pdf"]
    assert listed("tag=2026&external_ref=INV-4471") == ["march.pdf"]
    assert listed("tag=nothing") == []
    bob = {"Authorization": owners["bob"]["Authorization"]}
    assert client.get("/v1/documents?tag=invoice", headers=bob).get_json()["documents"] == []
    refused = client.get("/v1/documents?tag=a%00b", headers=alice)
    assert refused.status_code == 400
