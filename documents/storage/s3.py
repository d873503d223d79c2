"""s3://bucket[/prefix]: any S3-compatible object store, through boto3.

S3_ENDPOINT_URL points at a store other than AWS (MinIO, R2, B2, Ceph RGW);
credentials and region come from boto3's own chain (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION, profiles, instance roles). Nothing here knows
which server answers.

S3_SSE (AES256, or aws:kms with S3_SSE_KMS_KEY_ID) asks the store to encrypt every
object Sluice writes: each PUT, each multipart upload and copy, and each presigned
direct-upload PUT, whose signature covers the SSE headers so that a client cannot
leave them out.
"""
from __future__ import annotations

import base64
import contextlib
from pathlib import Path
from typing import BinaryIO, Iterator
from urllib.parse import urlsplit

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from documents.storage import (
    QUARANTINE,
    UPLOADS,
    BlobStorage,
    StorageUnavailable,
    blob_key,
)

# Multipart above 16 MB in 8 MB parts, two at a time: an upload of any size holds
# at most two parts in memory.
TRANSFER = TransferConfig(multipart_threshold=16 * 1024 * 1024,
                          multipart_chunksize=8 * 1024 * 1024, max_concurrency=2)
MISSING = {"404", "NoSuchKey", "NotFound"}


@contextlib.contextmanager
def _unavailable_on_error(what: str) -> Iterator[None]:
    """Every backend failure reads the same to callers: StorageUnavailable."""
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in MISSING:
            raise FileNotFoundError(what) from None
        raise StorageUnavailable(f"object store: {code or 'error'} on {what}") from None
    except BotoCoreError as exc:
        raise StorageUnavailable(f"object store unreachable ({type(exc).__name__})") from None
    except Boto3Error as exc:  # upload_file wraps a ClientError in S3UploadFailedError
        raise StorageUnavailable(f"object store: {type(exc).__name__} on {what}") from None


SSE_MODES = ("AES256", "aws:kms")
# boto3's SSE parameters, and the headers a presigned PUT must then carry
SSE_HEADERS = {"ServerSideEncryption": "x-amz-server-side-encryption",
               "SSEKMSKeyId": "x-amz-server-side-encryption-aws-kms-key-id"}


def encryption(sse: str | None, kms_key_id: str | None) -> dict[str, str]:
    """boto3's write parameters for S3_SSE / S3_SSE_KMS_KEY_ID; ValueError for a mode
    the store has no such thing as."""
    if not sse:
        if kms_key_id:
            raise ValueError("S3_SSE_KMS_KEY_ID needs S3_SSE=aws:kms")
        return {}
    if sse not in SSE_MODES:
        raise ValueError(f"S3_SSE must be one of {', '.join(SSE_MODES)}")
    if kms_key_id and sse != "aws:kms":
        raise ValueError("S3_SSE_KMS_KEY_ID needs S3_SSE=aws:kms")
    found = {"ServerSideEncryption": sse}
    if kms_key_id:
        found["SSEKMSKeyId"] = kms_key_id
    return found


def client_config(timeout: float) -> Config:
    """Every call, retries included, ends within about `timeout` seconds: two attempts,
    each a connect and a read wait, so that a hung store gives the web a 503 well
    before the front gives up on it (STORAGE_REQUEST_TIMEOUT, below proxy_read_timeout).
    The read wait is between two reads of a response, so a large transfer that keeps
    moving is never cut short."""
    connect = min(3.0, timeout / 4)
    return Config(
        # SigV4 everywhere: presigned URLs from boto3's SigV2 default for custom
        # endpoints are refused by R2 and newer stores.
        signature_version="s3v4", connect_timeout=connect,
        read_timeout=max(timeout / 2 - connect, 0.1),
        retries={"total_max_attempts": 2, "mode": "standard"})


class S3Storage(BlobStorage):
    name = "s3"

    def __init__(self, bucket: str, prefix: str, spool_dir: str | Path, client,
                 encryption: dict[str, str] | None = None):
        super().__init__(spool_dir)
        self.bucket, self.prefix, self.client = bucket, prefix, client
        # boto3's parameters for server-side encryption, on every write
        self.encryption = encryption or {}

    @classmethod
    def from_url(cls, url: str, spool_dir: str | Path, endpoint_url: str | None = None,
                 timeout: float = 20.0, sse: str | None = None,
                 sse_kms_key_id: str | None = None, **_options) -> "S3Storage":
        parts = urlsplit(url)
        if not parts.netloc:
            raise ValueError("an s3 STORAGE_URL is s3://bucket or s3://bucket/prefix")
        prefix = parts.path.strip("/")
        client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url or None, config=client_config(timeout))
        return cls(parts.netloc, f"{prefix}/" if prefix else "", spool_dir, client,
                   encryption(sse, sse_kms_key_id))

    def _key(self, sha256: str) -> str:
        return self.prefix + blob_key(sha256)

    def _quarantine_key(self, sha256: str) -> str:
        return f"{self.prefix}{QUARANTINE}{sha256}"

    def _head(self, key: str) -> bool:
        try:
            with _unavailable_on_error(key):
                self.client.head_object(Bucket=self.bucket, Key=key)
        except FileNotFoundError:
            return False
        return True

    def put(self, path: Path, sha256: str) -> None:
        try:
            if not self.exists(sha256):
                with _unavailable_on_error(self._key(sha256)):
                    self.client.upload_file(str(path), self.bucket, self._key(sha256),
                                            Config=TRANSFER, ExtraArgs=self.encryption)
        finally:
            path.unlink(missing_ok=True)

    def open(self, sha256: str) -> BinaryIO:
        with _unavailable_on_error(self._key(sha256)):
            return self.client.get_object(Bucket=self.bucket, Key=self._key(sha256))["Body"]

    def exists(self, sha256: str) -> bool:
        return self._head(self._key(sha256))

    def size(self, sha256: str) -> int:
        with _unavailable_on_error(self._key(sha256)):
            return self.client.head_object(Bucket=self.bucket,
                                           Key=self._key(sha256))["ContentLength"]

    def is_quarantined(self, sha256: str) -> bool:
        return self._head(self._quarantine_key(sha256))

    def quarantine(self, sha256: str) -> None:
        if not self.exists(sha256):
            return
        with _unavailable_on_error(self._key(sha256)):
            self.client.copy({"Bucket": self.bucket, "Key": self._key(sha256)}, self.bucket,
                             self._quarantine_key(sha256), Config=TRANSFER,
                             ExtraArgs=self.encryption)
            self.client.delete_object(Bucket=self.bucket, Key=self._key(sha256))
        self.delete_preview(sha256)

    def delete(self, sha256: str) -> None:
        with _unavailable_on_error(self._key(sha256)):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(sha256))
        self.delete_preview(sha256)

    def put_named(self, key: str, path: Path, content_type: str) -> None:
        with _unavailable_on_error(key):
            self.client.upload_file(str(path), self.bucket, self.prefix + key, Config=TRANSFER,
                                    ExtraArgs={"ContentType": content_type, **self.encryption})

    def open_named(self, key: str) -> BinaryIO:
        with _unavailable_on_error(key):
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"]

    def delete_named(self, key: str) -> None:
        with _unavailable_on_error(key):
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)

    def presign_named(self, key: str, expires_in: int, content_type: str) -> str | None:
        return self.client.generate_presigned_url("get_object", ExpiresIn=expires_in, Params={
            "Bucket": self.bucket, "Key": self.prefix + key, "ResponseContentType": content_type})

    def blobs(self) -> Iterator[tuple[str, float]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}sha256/")
        with _unavailable_on_error("a listing"):
            for page in pages:
                for item in page.get("Contents", []):
                    name = item["Key"].rsplit("/", 1)[-1]
                    if len(name) == 64:
                        yield name, item["LastModified"].timestamp()

    def presign_get(self, sha256: str, filename_header: str, content_type: str,
                    expires_in: int) -> str | None:
        return self.client.generate_presigned_url("get_object", ExpiresIn=expires_in, Params={
            "Bucket": self.bucket, "Key": self._key(sha256),
            "ResponseContentDisposition": filename_header,
            "ResponseContentType": content_type})

    def check(self) -> None:
        try:
            with _unavailable_on_error(self.bucket):
                self.client.head_bucket(Bucket=self.bucket)
        except FileNotFoundError:  # no bucket: nothing can be stored or served
            raise StorageUnavailable(f"object store: no bucket {self.bucket}") from None

    def _upload_key(self, name: str) -> str:
        return f"{self.prefix}{UPLOADS}{name}"

    def presign_upload(self, name: str, content_type: str, size: int,
                       expires_in: int, sha256: str | None = None) -> dict | None:
        # Content-Length and Content-Type are signed: the store refuses a PUT of any
        # other length or type. So is a client's checksum: S3 then refuses other bytes
        # (BadDigest). The worker still checks the size and digest it finds.
        params = {"Bucket": self.bucket, "Key": self._upload_key(name),
                  "ContentType": content_type, "ContentLength": size, **self.encryption}
        headers = {"Content-Type": content_type, "Content-Length": str(size),
                   **{SSE_HEADERS[name]: value for name, value in self.encryption.items()}}
        if sha256 is not None:
            checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
            params["ChecksumSHA256"] = headers["x-amz-checksum-sha256"] = checksum
        url = self.client.generate_presigned_url("put_object", ExpiresIn=expires_in,
                                                 Params=params)
        return {"method": "PUT", "url": url, "headers": headers}

    def upload_size(self, name: str) -> int:
        with _unavailable_on_error(self._upload_key(name)):
            return self.client.head_object(Bucket=self.bucket,
                                           Key=self._upload_key(name))["ContentLength"]

    def open_upload(self, name: str) -> BinaryIO:
        with _unavailable_on_error(self._upload_key(name)):
            return self.client.get_object(Bucket=self.bucket, Key=self._upload_key(name))["Body"]

    def upload_objects(self) -> Iterator[tuple[str, float]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._upload_key(""))
        with _unavailable_on_error("a listing"):
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"].rsplit("/", 1)[-1], item["LastModified"].timestamp()

    def delete_upload(self, name: str) -> None:
        with _unavailable_on_error(self._upload_key(name)):
            self.client.delete_object(Bucket=self.bucket, Key=self._upload_key(name))
