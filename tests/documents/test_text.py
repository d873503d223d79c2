"""A clean document's text: read (text layers, DOCX, XLSX) or OCRed (real tesseract, real
poppler), searched through the API owner by owner, previewed; limits end `limited`."""
import shutil
import time

import pytest
from PIL import Image
from sqlalchemy import func, select, text

from documents.models import Document
from documents.storage.local import LocalStorage
from documents.text import enrich, index
from documents.text.sandbox import Limits
from store.outbox import OutboxMessage
from store.task_names import EXTRACT_TEXT
from tests import services
from tests.documents import files
from tests.documents.conftest import upload
from tests.documents.test_documents_api import scan
from webapp.extensions import db

pytestmark = pytest.mark.usefixtures("redis_db", "ocr")
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
def ocr():
    services.require_ocr()


def limits(**overrides) -> Limits:
    return Limits(**{"wall_seconds": 60, **overrides})


def extract(app, document_id, **overrides):
    with app.app_context():
        status = enrich.extract(db.session, LocalStorage(app.config["STORAGE_DIR"]),
                                document_id, limits(**overrides))
        db.session.commit()
        return status


def clean_document(app, client, owner, clamd_url, content, filename, **overrides) -> dict:
    """Upload, scan (real clamd), read: the document as the API then shows it. With no
    `clamd_url`, it is taken as clean without a scan (see the limit tests)."""
    created = upload(client, owner, content, filename)
    assert created.status_code == 201, created.get_json()
    document_id = created.get_json()["id"]
    if clamd_url:
        assert scan(app, document_id, clamd_url) == "clean"
    else:
        with app.app_context():
            document = db.session.get(Document, document_id)
            document.status = "clean"
            enrich.queue(db.session, document)
            db.session.commit()
    extract(app, document_id, **overrides)
    return client.get(f"/v1/documents/{document_id}", headers=auth(owner)).get_json()


def auth(owner) -> dict:
    return {"Authorization": owner["Authorization"]}


def search(client, owner, query, **params):
    response = client.get("/v1/documents", query_string={"q": query, **params},
                          headers=auth(owner))
    assert response.status_code == 200, response.get_json()
    return response.get_json()["documents"]


def test_a_receipt_photo_and_a_scanned_pdf_are_found_by_a_number_printed_in_them(
        app, client, owners, clamd_url):
    alice = owners["alice"]
    receipt = clean_document(app, client, alice, clamd_url, files.rendered(
        ["CORNER SHOP RECEIPT", "Reference 4471", "Total 982.50 KES"]), "receipt.png")
    scanned = clean_document(app, client, alice, clamd_url, files.rendered(
        ["Invoice March", "Account 55193 settled"], "PDF"), "scan.pdf")
    assert receipt["text"]["status"] == "ocr" and receipt["text"]["pages_ocr"] == 1
    assert scanned["text"]["status"] == "ocr" and scanned["text"]["pages_ocr"] == 1
    assert receipt["preview"] is True and scanned["preview"] is True

    found = search(client, alice, "4471")
    assert [d["id"] for d in found] == [receipt["id"]]
    assert "<mark>4471</mark>" in found[0]["snippet"]
    assert [d["id"] for d in search(client, alice, "account 55193")] == [scanned["id"]]
    # every word must match; a stem matches its forms
    assert search(client, alice, "4471 55193") == []
    assert [d["id"] for d in search(client, alice, "invoices")] == [scanned["id"]]


def test_a_pdf_with_a_text_layer_is_read_without_ocr(app, client, owners, clamd_url):
    alice = owners["alice"]
    pages = [f"Ledger page {n}: settlement reference QX{7700 + n} for account holder"
             for n in range(3)]
    document = clean_document(app, client, alice, clamd_url, files.text_pdf(pages), "ledger.pdf")
    assert document["text"] == {"status": "extracted", "reason": None,
                                "characters": document["text"]["characters"],
                                "pages_ocr": 0, "ms": document["text"]["ms"]}
    assert [d["id"] for d in search(client, alice, "QX7702")] == [document["id"]]
    read = client.get(f"/v1/documents/{document['id']}/text", headers=auth(alice))
    assert read.status_code == 200
    assert all(page in read.get_json()["content"] for page in pages)
    assert read.get_json()["text"]["characters"] == len(read.get_json()["content"])


def test_a_docx_and_an_xlsx_are_found_by_a_value_in_them(app, client, owners, clamd_url):
    alice = owners["alice"]
    letter = clean_document(app, client, alice, clamd_url, files.docx(
        ["Dear customer,", "your claim number is 66120."]), "letter.docx")
    sheet = clean_document(app, client, alice, clamd_url, files.xlsx(
        [["invoice", "amount"], ["INV-88213", 1250]]), "sheet.xlsx")
    assert (letter["mime_type"], sheet["mime_type"]) == (DOCX, XLSX)
    assert letter["text"]["status"] == sheet["text"]["status"] == "extracted"
    assert letter["preview"] is sheet["preview"] is False  # no preview of these types
    assert [d["id"] for d in search(client, alice, "66120")] == [letter["id"]]
    assert [d["id"] for d in search(client, alice, "INV-88213")] == [sheet["id"]]
    assert [d["id"] for d in search(client, alice, "1250")] == [sheet["id"]]


def test_the_filename_ranks_above_the_body_and_search_combines_with_filters(
        app, client, owners, clamd_url):
    alice = owners["alice"]
    in_body = clean_document(app, client, alice, clamd_url,
                             files.text_pdf(["quarterly statement of the gizmo account"]),
                             "a.pdf")
    in_name = clean_document(app, client, alice, clamd_url,
                             files.text_pdf(["nothing of interest on this page at all"]),
                             "gizmo.pdf")
    assert [d["id"] for d in search(client, alice, "gizmo")] == [in_name["id"], in_body["id"]]
    assert search(client, alice, "gizmo")[0]["snippet"] is None  # the name matched
    assert search(client, alice, "gizmo", status="infected") == []
    assert [d["id"] for d in search(client, alice, "gizmo", status="clean")] == \
        [in_name["id"], in_body["id"]]


def test_another_owners_search_never_finds_them(app, client, owners, clamd_url):
    secret = files.text_pdf(["Private medical reference ZZ31337 for alice only"])
    alices = clean_document(app, client, owners["alice"], clamd_url, secret, "mine.pdf")
    assert [d["id"] for d in search(client, owners["alice"], "ZZ31337")] == [alices["id"]]
    assert search(client, owners["bob"], "ZZ31337") == []
    assert search(client, owners["bob"], "mine") == []
    for path in ("text", "preview"):
        response = client.get(f"/v1/documents/{alices['id']}/{path}", headers=auth(owners["bob"]))
        assert response.status_code == 404

    # Bob uploading the same bytes gets his own document, read and found for him alone.
    bobs = clean_document(app, client, owners["bob"], clamd_url, secret, "his.pdf")
    assert [d["id"] for d in search(client, owners["bob"], "ZZ31337")] == [bobs["id"]]
    assert [d["id"] for d in search(client, owners["alice"], "ZZ31337")] == [alices["id"]]


def test_a_preview_is_a_small_png_served_to_its_owner_only_while_clean(
        app, client, owners, clamd_url, tmp_path):
    alice = owners["alice"]
    document = clean_document(app, client, alice, clamd_url,
                              files.rendered(["preview me"], size=(2000, 1000)), "wide.png")
    response = client.get(f"/v1/documents/{document['id']}/preview", headers=auth(alice))
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    (tmp_path / "p.png").write_bytes(response.data)
    with Image.open(tmp_path / "p.png") as image:
        assert image.size == (256, 128)


def test_an_infected_file_is_never_read(app, client, owners, clamd_url):
    alice = owners["alice"]
    created = upload(client, alice, files.EICAR, "eicar.txt").get_json()
    assert scan(app, created["id"], clamd_url) == "infected"
    assert extract(app, created["id"]) is None
    with app.app_context():
        queued = db.session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.task_name == EXTRACT_TEXT))
        assert queued == 0
        assert db.session.get(Document, created["id"]).text_status is None
        assert index.body_of(db.session, created["id"]) is None
    assert client.get(f"/v1/documents/{created['id']}/text",
                      headers=auth(alice)).get_json()["error"]["code"] == "not_clean"


def test_bytes_found_infected_later_lose_their_text_and_preview(
        app, client, owners, clamd_url):
    from documents.scanning import mark_infected

    alice = owners["alice"]
    document = clean_document(app, client, alice, clamd_url,
                              files.rendered(["Statement 99120"]), "later.png")
    assert [d["id"] for d in search(client, alice, "99120")] == [document["id"]]
    storage = LocalStorage(app.config["STORAGE_DIR"])
    with app.app_context():
        storage.quarantine(document["sha256"])  # what a rescan that finds it does
        mark_infected(db.session, document["sha256"], "Sluice.Test.Later")
        db.session.commit()
    assert search(client, alice, "99120") == []
    shown = client.get(f"/v1/documents/{document['id']}", headers=auth(alice)).get_json()
    assert (shown["status"], shown["text"], shown["preview"]) == ("infected", None, False)
    with pytest.raises(FileNotFoundError):
        storage.open_preview(document["sha256"])
    assert client.get(f"/v1/documents/{document['id']}/preview",
                      headers=auth(alice)).status_code == 409


def test_a_deleted_document_leaves_no_text_and_no_index_entry(app, client, owners, clamd_url):
    alice = owners["alice"]
    document = clean_document(app, client, alice, clamd_url,
                              files.text_pdf(["Erase me: passport number PX4410923"]), "p.pdf")
    assert client.delete(f"/v1/documents/{document['id']}", headers=auth(alice)).status_code \
        == 204
    assert search(client, alice, "PX4410923") == []
    with app.app_context():
        assert index.body_of(db.session, document["id"]) is None
        # the FTS5 index itself holds nothing of it
        if db.session.get_bind().dialect.name == "sqlite":
            left = db.session.execute(text(
                f"SELECT count(*) FROM {index.FTS_TABLE} WHERE {index.FTS_TABLE} "
                "MATCH '\"PX4410923\"'")).scalar()
            assert left == 0
    with pytest.raises(FileNotFoundError):
        LocalStorage(app.config["STORAGE_DIR"]).open_preview(document["sha256"])


def test_a_query_without_a_word_is_refused(client, owners):
    response = client.get("/v1/documents", query_string={"q": "!!! ---"},
                          headers=auth(owners["alice"]))
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_query"


def test_the_stored_text_is_sealed_at_rest(app, client, owners, clamd_url):
    document = clean_document(app, client, owners["alice"], clamd_url,
                              files.text_pdf(["Sealed sentence with token SEALED8841"]), "s.pdf")
    with app.app_context():
        raw = db.session.execute(text("SELECT body FROM document_texts WHERE document_id = :id"),
                                 {"id": document["id"]}).scalar()
    assert raw.startswith("sl1:") and "SEALED8841" not in raw


def test_a_million_characters_of_distinct_words_are_stored_and_indexed_as_far_as_fits(
        app, client, owners, clamd_url):
    # 1.08 M characters: past TEXT_MAX_CHARS, and its first million would make a
    # tsvector of 1.3 MB, past PostgreSQL's 1 MB
    import random
    import string

    rng = random.Random(1)
    words = ["".join(rng.choice(string.ascii_lowercase) for _ in range(8))
             for _ in range(120_000)]
    document = clean_document(app, client, owners["alice"], clamd_url,
                              " ".join(words).encode(), "words.txt")
    assert (document["text"]["status"], document["text"]["reason"]) == \
        ("limited", "text_max_chars")
    assert document["text"]["characters"] == 1_000_000
    assert [d["id"] for d in search(client, owners["alice"], words[10])] == [document["id"]]


# Limits: a clean file can still be a parser bomb ----------------------------------------

@pytest.mark.parametrize("content, filename, reason", [
    (lambda: files.bomb_png(8000, 8000), "bomb.png", "ocr_max_pixels"),
    (lambda: files.text_pdf([f"Page {n} of the archive ledger, entry {n:05d}"
                             for n in range(10000)]), "long.pdf", "ocr_max_pages"),
    (lambda: files.text_pdf([""], size=(100000, 800)), "wide.pdf", "ocr_max_pixels"),
], ids=["decompression-bomb-png", "10000-page-pdf", "100000px-wide-page"])
def test_each_limit_ends_limited_in_time_and_the_next_document_is_read(
        app, client, owners, clamd_url, content, filename, reason):
    alice = owners["alice"]
    started = time.monotonic()
    # clamd calls such files unscannable (Heuristics.Limits.*), so they never reach the
    # sandbox here; a scanner with higher limits would call them clean, and the sandbox
    # must hold then too
    document = clean_document(app, client, alice, None, content(), filename)
    assert time.monotonic() - started < 60
    assert (document["text"]["status"], document["text"]["reason"]) == ("limited", reason)
    if filename == "long.pdf":  # what was read before the cap is kept
        assert document["text"]["characters"] > 0
        assert [d["id"] for d in search(client, alice, "00049")] == [document["id"]]
        assert search(client, alice, "00050") == []
    # the worker is fine: the next document is read as usual
    after = clean_document(app, client, alice, clamd_url,
                           files.text_pdf(["An ordinary page after the bomb, ref 12345"]), "ok.pdf")
    assert after["text"]["status"] == "extracted"


def test_the_wall_clock_cpu_and_memory_limits_end_an_ocr_as_limited(
        app, client, owners, clamd_url):
    alice = owners["alice"]
    # one tesseract run of well over a CPU second on this page
    page = files.rendered([f"line {n} of a long scanned page with words and numbers "
                           f"1234 5678 9012 3456 7890" for n in range(60)], size=(6000, 6000))
    timed = clean_document(app, client, alice, clamd_url, page, "slow.png", wall_seconds=0.5)
    assert (timed["text"]["status"], timed["text"]["reason"]) == ("limited", "timeout")
    with app.app_context():  # read again, under a CPU limit of one second
        document = db.session.get(Document, timed["id"])
        document.text_status = "pending"
        db.session.commit()
    extract(app, timed["id"], cpu_seconds=1)
    starved = client.get(f"/v1/documents/{timed['id']}", headers=auth(alice)).get_json()
    assert starved["text"]["status"] == "limited"
    assert starved["text"]["reason"] == "tesseract_signal_9"  # RLIMIT_CPU's kill
    # 36 MB of pixels to decode (under the pixel cap) in 64 MB of address space
    large = files.rendered(["a large page"], size=(6000, 6000))
    squeezed = clean_document(app, client, alice, clamd_url, large, "large.png",
                              memory_bytes=64 * 1024 * 1024)
    assert (squeezed["text"]["status"], squeezed["text"]["reason"]) == ("limited", "memory")


def test_documents_stored_before_text_existed_are_queued_once_by_the_cli(
        app, client, owners, clamd_url):
    created = upload(client, owners["alice"],
                     files.text_pdf(["an old page, stored before text was read"]), "old.pdf")
    document_id = created.get_json()["id"]
    assert scan(app, document_id, clamd_url) == "clean"
    with app.app_context():  # as a migrated database holds it: clean, never read
        db.session.get(Document, document_id).text_status = None
        db.session.execute(OutboxMessage.__table__.delete())
        db.session.commit()
    runner = app.test_cli_runner()
    for expected in ("queued 1 document(s)", "queued 0 document(s)"):
        result = runner.invoke(args=["documents", "read-text"])
        assert result.exit_code == 0 and expected in result.output, result.output
    with app.app_context():
        assert db.session.scalars(select(OutboxMessage.kwargs).where(
            OutboxMessage.task_name == EXTRACT_TEXT)).all() == [{"document_id": document_id}]
    assert extract(app, document_id) == "extracted"


def test_a_rescan_that_stays_clean_reads_nothing_again(app, client, owners, clamd_url):
    document = clean_document(app, client, owners["alice"], clamd_url,
                              files.text_pdf(["Read once, however often it is scanned"]), "o.pdf")
    assert scan(app, document["id"], clamd_url) == "clean"
    with app.app_context():
        queued = db.session.scalars(select(OutboxMessage.kwargs).where(
            OutboxMessage.task_name == EXTRACT_TEXT)).all()
    assert queued == [{"document_id": document["id"]}]  # the first clean verdict's only
    assert extract(app, document["id"]) is None  # already read: nothing to do


def test_without_tesseract_images_are_skipped_and_text_layers_still_read(tmp_path, monkeypatch):
    """The embedded default on a machine without tesseract: `make run` still reads PDFs."""
    from pathlib import Path

    from documents.text import sandbox

    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("pdftotext", "pdftoppm", "pdfinfo"):
        (tools / tool).symlink_to(shutil.which(tool))
    monkeypatch.setenv("PATH", str(tools))
    image, pdf = tmp_path / "receipt.png", tmp_path / "ledger.pdf"
    image.write_bytes(files.rendered(["Reference 4471"]))
    pdf.write_bytes(files.text_pdf(["A ledger page with a text layer, reference 4471"]))
    read_image = sandbox.run(image, "image/png", limits(), Path(tmp_path / "p1.png"))
    read_pdf = sandbox.run(pdf, "application/pdf", limits(), Path(tmp_path / "p2.png"))
    assert (read_image.status, read_image.reason, read_image.text) == \
        ("skipped", "ocr_unavailable", "")
    assert read_image.preview  # Pillow still makes the preview
    assert read_pdf.status == "extracted" and "reference 4471" in read_pdf.text


@pytest.mark.parametrize("content_type", sorted(
    ["application/pdf", "image/png", "image/jpeg", "image/tiff", DOCX, XLSX, "text/plain"]))
def test_hostile_bytes_of_every_type_end_in_a_decided_state(tmp_path, content_type):
    """Clean is not well-formed: garbage, truncated and NUL-filled files of each type
    end failed, limited, skipped or read, in time, and never raise."""
    from documents.text import sandbox

    good = {"application/pdf": files.text_pdf(["a page of text to cut short somewhere"]),
            "image/png": files.rendered(["cut"]), DOCX: files.docx(["cut short"]),
            XLSX: files.xlsx([["cut", 1]])}.get(content_type, b"plain \x00 text \xff\xfe")
    for number, content in enumerate((good[:len(good) // 2], b"\x00" * 4096,
                                      bytes(range(256)) * 64, good + b"\x00trailing")):
        path = tmp_path / f"hostile-{number}"
        path.write_bytes(content)
        started = time.monotonic()
        result = sandbox.run(path, content_type, limits(wall_seconds=30), tmp_path / "p.png")
        assert time.monotonic() - started < 30
        assert result.status in ("failed", "limited", "skipped", "extracted", "ocr"), result
        assert "\x00" not in result.text


def test_on_s3_the_preview_is_a_presigned_redirect_and_goes_with_the_bytes(
        make_app, s3_env, moto, clamd_url):
    import requests

    from documents.scanning import mark_infected
    from documents.storage import from_config
    from tests.documents.conftest import make_owners

    config, bucket = s3_env
    app = make_app(**config, DOWNLOAD_MODE="redirect")
    client, alice = app.test_client(), make_owners(app)["alice"]
    document_id = upload(client, alice, files.rendered(["on the object store 3310"]),
                         "s3.png").get_json()["id"]
    storage = from_config(app.config)
    with app.app_context():
        from documents.scanner import client_from_url
        from documents.scanning import scan_document

        assert scan_document(db.session, storage, client_from_url(clamd_url, timeout=10),
                             document_id, 50 * 1024 * 1024) == "clean"
        db.session.commit()
        assert enrich.extract(db.session, storage, document_id, limits()) == "ocr"
        db.session.commit()
    sha256 = client.get(f"/v1/documents/{document_id}", headers=auth(alice)).get_json()["sha256"]
    assert f"pre/previews/{sha256[:2]}/{sha256[2:4]}/{sha256}.png" in moto.keys(bucket)
    answer = client.get(f"/v1/documents/{document_id}/preview", headers=auth(alice))
    assert answer.status_code == 302
    fetched = requests.get(answer.headers["Location"], timeout=10)
    assert fetched.status_code == 200 and fetched.content.startswith(b"\x89PNG")
    assert [d["id"] for d in search(client, alice, "3310")] == [document_id]

    with app.app_context():  # found infected later: quarantined, the preview deleted
        storage.quarantine(sha256)
        mark_infected(db.session, sha256, "Sluice.Test.Later")
        db.session.commit()
    assert not any(key.startswith("pre/previews/") for key in moto.keys(bucket))
