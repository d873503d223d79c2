"""An archive's client checksum (x-amz-checksum-sha256, or Content-Digest in its part),
compared with what the spool computed: a mismatch is 400 and no import."""
import io
import zipfile

from sqlalchemy import func, select

from documents.models import Import
from tests.documents import files
from tests.documents.test_checksums import b64sha
from webapp.extensions import db


def test_an_import_archive_with_a_wrong_digest_is_refused(app, client, owners):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.pdf", files.pdf("zipped"))
    response = client.post("/v1/imports", content_type="multipart/form-data",
                           data={"archive": (io.BytesIO(archive.getvalue()), "batch.zip")},
                           headers={"Authorization": owners["alice"]["Authorization"],
                                    "x-amz-checksum-sha256": b64sha(b"not it")})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "digest_mismatch"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Import)) == 0
    accepted = client.post("/v1/imports", content_type="multipart/form-data",
                           data={"archive": (io.BytesIO(archive.getvalue()), "batch.zip")},
                           headers={"Authorization": owners["alice"]["Authorization"],
                                    "x-amz-checksum-sha256": b64sha(archive.getvalue())})
    assert accepted.status_code in (201, 202), accepted.get_json()
