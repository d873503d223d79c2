"""Web and worker as two hosts that share no disk: only PostgreSQL, Redis, the broker
(Redis, or RabbitMQ) and an S3-compatible object store (moto's server, reached like
any other store).

Each process gets its own instance and temp directories. A document goes from upload
to scan to download (streamed by the web, and as a redirect to a presigned GET), an
import runs, EICAR is quarantined in the store, a direct-to-store upload becomes a
clean document, and afterwards neither host's disk holds a blob.
"""
import re
from pathlib import Path

import pytest
import requests

from tests.documents import files
from tests.e2e.conftest import bearer, fresh_stack_environment
from tests.e2e.harness import Stack, app_settings
from tests.e2e.test_documents_e2e import download_link, post, status_becomes
from tests.imports import archives
from tests.services import Clamd, MotoS3, free_port, wait_for
from webapp import create_app

pytestmark = pytest.mark.e2e
BUCKET = "sluice-e2e"
PREFIX = "blobs"
HEX64 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture
def split_hosts(tmp_path, worker_index, broker):
    moto = MotoS3(tmp_path).start()
    moto.bucket(BUCKET)
    clamd = Clamd(tmp_path / "clamd").start()
    shared = fresh_stack_environment(tmp_path, worker_index, "split_hosts")
    shared.update(MotoS3.ENV, STORAGE_URL=f"s3://{BUCKET}/{PREFIX}",
                  S3_ENDPOINT_URL=moto.endpoint, CLAMD_URL=clamd.url, WORKER_CONCURRENCY="2",
                  **broker[1])
    shared.pop("SLUICE_INSTANCE_PATH")
    hosts = {}
    for name in ("web", "worker", "web-redirect"):
        disk = tmp_path / f"host-{name}"
        (disk / "tmp").mkdir(parents=True)
        hosts[name] = Stack(disk / "logs", {
            **shared, "SLUICE_INSTANCE_PATH": str(disk / "instance"), "TMPDIR": str(disk / "tmp"),
            "PORT": str(free_port()), "PROMETHEUS_MULTIPROC_DIR": str(disk / "metrics"),
            **({"DOWNLOAD_MODE": "redirect"} if name == "web-redirect" else {})})
    hosts["web"].release()
    hosts["web"].start("web")
    hosts["worker"].start("worker")
    hosts["web-redirect"].start("web")
    app = create_app(app_settings(shared))
    auth = bearer(app, "split-uploader", ["documents:read", "documents:write",
                                          "imports:write"])
    try:
        hosts["web"].wait_ready()
        hosts["web-redirect"].wait_ready()
        yield hosts, auth, moto, tmp_path
    finally:
        for stack in hosts.values():
            stack.stop()
        clamd.stop()
        moto.stop()
        app.extensions["sluice.db"].engine.dispose()


def blobs_on_disk(root: Path) -> list[str]:
    """Anything on a host's disk that looks like a stored or spooled blob."""
    return [str(path) for path in root.rglob("*") if path.is_file()
            and (HEX64.match(path.name) or path.suffix == ".part" or "sha256" in path.parts)]


def test_a_document_and_an_import_cross_hosts_through_the_object_store(split_hosts):
    hosts, auth, moto, tmp_path = split_hosts
    web, redirecting = hosts["web"], hosts["web-redirect"]
    ready = web.wait_ready(components=("storage",))
    assert ready["components"]["storage"] == {"status": "ok", "backend": "s3"}

    clean = files.pdf("split hosts")
    clean_id = post(web, auth, clean, "Report é 2026.pdf")
    infected_id = post(web, auth, files.EICAR, "eicar.txt")
    status_becomes(web, auth, clean_id, "clean")
    status_becomes(web, auth, infected_id, "infected")

    # Streamed by the web host (proxy), from the store.
    served = requests.get(download_link(web, auth, clean_id).json()["url"], timeout=10)
    assert served.status_code == 200 and served.content == clean
    assert served.headers["Content-Disposition"] == \
        "attachment; filename*=UTF-8''Report%20%C3%A9%202026.pdf"

    # Or a redirect to a presigned GET that carries the same headers.
    hop = requests.get(download_link(redirecting, auth, clean_id).json()["url"], timeout=10,
                       allow_redirects=False)
    assert hop.status_code == 302
    location = hop.headers["Location"]
    assert location.startswith(moto.endpoint) and "X-Amz-Expires=60" in location
    fetched = requests.get(location, timeout=10)
    assert fetched.status_code == 200 and fetched.content == clean
    assert fetched.headers["Content-Disposition"] == served.headers["Content-Disposition"]
    assert fetched.headers["Content-Type"] == "application/pdf"
    assert download_link(redirecting, auth, infected_id).status_code == 409

    # An import: the archive is stored by the web host, read by the worker.
    archive = archives.build([(f"doc-{i}.pdf", files.pdf(f"import {i}")) for i in range(5)])
    created = requests.post(web.url("/v1/imports"), headers=auth, timeout=30,
                            files={"archive": ("batch.zip", archive)})
    assert created.status_code == 202, created.text
    import_url = web.url(f"/v1/imports/{created.json()['id']}")
    done = wait_for(lambda: (p := requests.get(import_url, headers=auth, timeout=10).json())
                    ["status"] == "completed" and p, timeout=90, interval=0.5,
                    what="the import to complete")
    assert (done["total"], done["succeeded"], done["rejected"]) == (5, 5, 0)

    # Straight to the store: the web host only presigns; the worker reads the object.
    direct = files.pdf("put straight into the store")
    started = requests.post(web.url("/v1/uploads"), headers=auth, timeout=10, json={
        "filename": "direct.pdf", "size": len(direct), "content_type": "application/pdf"})
    assert started.status_code == 201, started.text
    target = started.json()["upload"]
    assert target["url"].startswith(moto.endpoint)
    assert requests.put(target["url"], data=direct, headers=target["headers"],
                        timeout=10).status_code == 200
    upload_url = web.url(f"/v1/uploads/{started.json()['id']}")
    assert requests.post(f"{upload_url}/complete", headers=auth, timeout=10).status_code == 202
    finished = wait_for(lambda: (u := requests.get(upload_url, headers=auth, timeout=10).json())
                        ["status"] == "completed" and u, timeout=60, interval=0.5,
                        what="the direct upload to become a document")
    status_becomes(web, auth, finished["document_id"], "clean")
    fetched = requests.get(download_link(web, auth, finished["document_id"]).json()["url"],
                           timeout=10)
    assert fetched.status_code == 200 and fetched.content == direct

    keys = moto.keys(BUCKET)
    eicar = next(k for k in keys if k.startswith(f"{PREFIX}/quarantine/"))
    assert not any(k.endswith(eicar.rsplit("/", 1)[1]) and "/sha256/" in k for k in keys)
    # pdf, zip, 5 imported, 1 direct; the upload area emptied by the worker
    assert sum(1 for k in keys if k.startswith(f"{PREFIX}/sha256/")) == 1 + 1 + 5 + 1
    assert not any(k.startswith(f"{PREFIX}/uploads/") for k in keys)
    for host in ("web", "worker", "web-redirect"):
        assert blobs_on_disk(tmp_path / f"host-{host}") == [], host
