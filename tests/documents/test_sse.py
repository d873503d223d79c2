"""Server-side encryption on the object store (S3_SSE, S3_SSE_KMS_KEY_ID): every object
Sluice writes asks the store to encrypt it, presigned direct uploads included (their
signature covers the SSE headers). moto records the headers it was sent."""
from __future__ import annotations

import hashlib

import pytest
import requests

from documents.storage import open_storage
from tests.documents import files
from tests.documents.conftest import make_owners, upload
from webapp.config import ConfigError

KMS_KEY = "alias/sluice-documents"


def encryption_of(moto, bucket: str, key: str) -> tuple[str | None, str | None]:
    head = moto.client().head_object(Bucket=bucket, Key=key)
    return head.get("ServerSideEncryption"), head.get("SSEKMSKeyId")


def blob_key(prefix: str, content: bytes) -> str:
    digest = hashlib.sha256(content).hexdigest()
    return f"{prefix}sha256/{digest[:2]}/{digest[2:4]}/{digest}"


def test_uploads_and_direct_uploads_are_written_encrypted_under_the_kms_key(
        make_app, s3_env, moto):
    config, bucket = s3_env
    app = make_app(**config, S3_SSE="aws:kms", S3_SSE_KMS_KEY_ID=KMS_KEY)
    client, alice = app.test_client(), make_owners(app)["alice"]
    content = files.pdf("encrypted by the store")
    assert upload(client, alice, content).status_code == 201
    sse, key_id = encryption_of(moto, bucket, blob_key("pre/", content))
    assert sse == "aws:kms" and KMS_KEY in (key_id or "")

    direct = files.pdf("sent straight to the store, encrypted")
    started = client.post("/v1/uploads", headers={"Authorization": alice["Authorization"]},
                          json={"filename": "d.pdf", "size": len(direct),
                                "content_type": "application/pdf"}).get_json()
    headers = started["upload"]["headers"]
    assert headers["x-amz-server-side-encryption"] == "aws:kms"
    assert headers["x-amz-server-side-encryption-aws-kms-key-id"] == KMS_KEY
    signed = started["upload"]["url"].split("X-Amz-SignedHeaders=")[1].split("&")[0]
    assert "x-amz-server-side-encryption" in signed  # a client cannot leave it out
    sent = requests.put(started["upload"]["url"], data=direct, headers=headers, timeout=30)
    assert sent.status_code == 200
    [upload_key] = [k for k in moto.keys(bucket) if k.startswith("pre/uploads/")]
    assert encryption_of(moto, bucket, upload_key)[0] == "aws:kms"


def test_quarantine_and_migration_keep_the_encryption(s3_env, moto, tmp_path):
    config, bucket = s3_env
    store = open_storage(config["STORAGE_URL"], tmp_path, endpoint_url=moto.endpoint,
                         sse="AES256")
    spool = tmp_path / "blob"
    spool.write_bytes(b"bytes to quarantine")
    digest = hashlib.sha256(b"bytes to quarantine").hexdigest()
    store.put(spool, digest)
    assert encryption_of(moto, bucket, blob_key("pre/", b"bytes to quarantine"))[0] == "AES256"
    store.quarantine(digest)
    assert encryption_of(moto, bucket, f"pre/quarantine/{digest}")[0] == "AES256"


@pytest.mark.parametrize("settings, message", [
    ({"S3_SSE": "rot13"}, "S3_SSE must be one of AES256, aws:kms"),
    ({"S3_SSE": "AES256", "S3_SSE_KMS_KEY_ID": KMS_KEY}, "needs S3_SSE=aws:kms"),
    ({"S3_SSE_KMS_KEY_ID": KMS_KEY}, "needs S3_SSE=aws:kms"),
])
def test_settings_that_cannot_encrypt_stop_the_start(make_app, s3_env, settings, message):
    config, _bucket = s3_env
    with pytest.raises(ConfigError, match=message):
        make_app(**config, **settings)


def test_sse_on_file_storage_is_refused(make_app):
    with pytest.raises(ConfigError, match="apply to an s3:// STORAGE_URL"):
        make_app(S3_SSE="AES256")
