"""Client checksums on uploads (RFC 9530's Content-Digest, or S3's
x-amz-checksum-sha256): the digest the spool computes anyway is compared with the
one the client sent; a mismatch is a 400 that stores nothing. Downloads say theirs."""
import base64
import hashlib
import os

import pytest
from sqlalchemy import func, select

from documents.models import Document
from tests.documents import files
from webapp.extensions import db


def b64sha(content: bytes) -> str:
    return base64.b64encode(hashlib.sha256(content).digest()).decode()


def stored(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Document))


def no_temp_files(app) -> bool:
    tmp = os.path.join(app.config["STORAGE_DIR"], "tmp")
    return not os.path.exists(tmp) or os.listdir(tmp) == []


def raw(client, owner, content: bytes, **headers):
    return client.post("/v1/documents", data=content, headers={
        "Authorization": owner["Authorization"], "Content-Type": "application/pdf",
        "Content-Disposition": "attachment; filename=a.pdf", **headers})


def multipart(client, owner, content: bytes, part_headers: str = "", **headers):
    """A multipart body written out, so the file part can carry headers of its own."""
    boundary = "sluice-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"a.pdf\"\r\nContent-Type: application/pdf\r\n{part_headers}\r\n"
            ).encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return client.post("/v1/documents", data=body, headers={
        "Authorization": owner["Authorization"],
        "Content-Type": f"multipart/form-data; boundary={boundary}", **headers})


def test_a_raw_body_with_its_digest_is_stored_and_a_wrong_one_is_400(app, client, owners):
    content = files.pdf("digest")
    other = files.pdf("another")
    wrong = raw(client, owners["alice"], content,
                **{"Content-Digest": f"sha-256=:{b64sha(other)}:"})
    assert wrong.status_code == 400 and wrong.get_json()["error"]["code"] == "digest_mismatch"
    assert stored(app) == 0 and no_temp_files(app)
    right = raw(client, owners["alice"], content,
                **{"Content-Digest": f"sha-512=:AAAA:, sha-256=:{b64sha(content)}:"})
    assert right.status_code == 201, right.get_json()
    amz = raw(client, owners["bob"], content, **{"x-amz-checksum-sha256": b64sha(content)})
    assert amz.status_code == 201


@pytest.mark.parametrize("headers, code", [
    ({"Content-Digest": "sha-256=:not base64!:"}, "invalid_digest"),
    ({"Content-Digest": "md5=:AAAA:"}, "invalid_digest"),
    ({"Content-Digest": "sha-256=:AAAA:"}, "invalid_digest"),          # not 32 bytes
    ({"x-amz-checksum-sha256": "%%%"}, "invalid_digest"),
    ({"Content-Digest": "sha-256=:" + b64sha(b"a") + ":",
      "x-amz-checksum-sha256": b64sha(b"b")}, "digest_mismatch"),       # they disagree
])
def test_an_unreadable_or_contradictory_digest_is_400(app, client, owners, headers, code):
    response = raw(client, owners["alice"], files.pdf("x"), **headers)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == code
    assert stored(app) == 0


def test_a_multipart_file_takes_its_digest_from_its_part_or_the_s3_header(app, client, owners):
    content = files.pdf("parts")
    good = multipart(client, owners["alice"], content,
                     part_headers=f"Content-Digest: sha-256=:{b64sha(content)}:\r\n")
    assert good.status_code == 201, good.get_json()
    bad = multipart(client, owners["bob"], content,
                    part_headers=f"Content-Digest: sha-256=:{b64sha(b'other')}:\r\n")
    assert bad.get_json()["error"]["code"] == "digest_mismatch"
    bad_amz = multipart(client, owners["bob"], content,
                        **{"x-amz-checksum-sha256": b64sha(b"other")})
    assert bad_amz.get_json()["error"]["code"] == "digest_mismatch"
    # a request-level Content-Digest covers the multipart body, not the file: refused
    whole = multipart(client, owners["bob"], content,
                      **{"Content-Digest": f"sha-256=:{b64sha(content)}:"})
    assert whole.status_code == 400 and whole.get_json()["error"]["code"] == "invalid_digest"
    assert stored(app) == 1 and no_temp_files(app)
