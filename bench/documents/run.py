"""Document upload and scan benchmark (`make bench`).

1. A BENCH_DOC_MB (default 1024) MiB file uploaded through gunicorn (production
   config) with curl: the web worker's peak RSS, and upload throughput as a ratio
   of hashlib.sha256 over the same file in the same run (the upload hashes, caps
   and stores it in one pass). The same upload to a bare WSGI app on the same
   gunicorn config that only reads and hashes the body (bench/documents/ceiling.py)
   shows how much of the gap is gunicorn's own body reading, and the same upload
   to a bare socket server that reads, hashes and writes it with no HTTP server at
   all (bench/documents/bare_socket.py) how much is left for anything on this
   machine. BENCH_ROUNDS (default 3) alternating rounds of the three.
2. Our clamd INSTREAM client against a raw INSTREAM of the same bytes.
3. file:// against s3:// (moto's server on loopback as the S3 endpoint): the same
   upload through gunicorn and the same scan (blob streamed from the store into
   clamd), BENCH_ROUNDS alternating rounds, the stored blob removed before each so
   every round writes it; the s3/file ratio of each, and each web's peak RSS. The
   s3 web's extra memory is set against its ceiling measured in the same run: what
   importing boto3 and building its S3 client costs a bare Python process, before
   any byte moves (botocore's loaded service model and endpoint rules).
"""
from __future__ import annotations

import base64
import hashlib
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import ROUNDS, spread  # noqa: E402
from bench.cpu import process_cpu  # noqa: E402
from documents.scanner import client_from_url  # noqa: E402
from documents.storage import from_config  # noqa: E402
from tests.e2e.harness import Stack, clean_environment  # noqa: E402
from tests.services import (  # noqa: E402
    DATA_KEYS,
    INDEX_KEY,
    Clamd,
    MotoS3,
    free_port,
    fresh_postgres_database,
    wait_for,
)

MB = 1024 * 1024
SIZE_MB = int(os.environ.get("BENCH_DOC_MB", "1024"))


def make_file(path: Path) -> None:
    """Random text (an allowed type), every 16 MiB block distinct."""
    block = base64.b64encode(os.urandom(12 * MB))[:16 * MB - 16]
    with path.open("wb") as out:
        for i in range(SIZE_MB // 16):
            out.write(block + b"%015d\n" % i)


def sha256_seconds(path: Path) -> float:
    started, digest = time.perf_counter(), hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(MB):
            digest.update(chunk)
    return time.perf_counter() - started


def raw_instream_seconds(sock_path: str, path: Path) -> tuple[float, bytes]:
    started = time.perf_counter()
    with socket.socket(socket.AF_UNIX) as sock, path.open("rb") as handle:
        sock.connect(sock_path)
        sock.sendall(b"zINSTREAM\0")
        while chunk := handle.read(64 * 1024):
            sock.sendall(struct.pack("!L", len(chunk)) + chunk)
        sock.sendall(struct.pack("!L", 0))
        reply = sock.recv(4096)
    return time.perf_counter() - started, reply


def peak_rss_mb(master_pid: int) -> float:
    peaks = []
    children = subprocess.run(["pgrep", "-P", str(master_pid)], capture_output=True,
                              text=True).stdout.split()
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks)


BOTO3_CLIENT_RSS = """
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2 ** 20
before = rss()
import boto3
boto3.session.Session().client("s3", endpoint_url="http://127.0.0.1:9", region_name="us-east-1",
                               aws_access_key_id="x", aws_secret_access_key="x")
print(rss() - before)
"""


def boto3_client_rss_mb() -> float:
    """What boto3 and an S3 client add to a process that has moved no bytes."""
    return float(subprocess.run([sys.executable, "-c", BOTO3_CLIENT_RSS], capture_output=True,
                                text=True, check=True).stdout)


def post_file(url: str, path: Path, token: str) -> tuple[float, str]:
    """Seconds to POST `path` as a multipart file with curl, and the HTTP status."""
    started = time.perf_counter()
    result = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
         f"Authorization: Bearer {token}", "-F", f"file=@{path};type=text/plain;filename=data.txt",
         url], capture_output=True, text=True)
    return time.perf_counter() - started, result.stdout


def post_raw(url: str, path: Path, token: str) -> tuple[float, str]:
    """Seconds to POST `path` as the raw body, and the HTTP status. `-T` streams the file
    (`--data-binary @file` would read all of it into curl's memory first)."""
    started = time.perf_counter()
    result = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
         f"Authorization: Bearer {token}", "-H", "Content-Type: text/plain", "-H",
         "Content-Disposition: attachment; filename=data.txt", "-X", "POST", "-T", str(path),
         url], capture_output=True, text=True)
    return time.perf_counter() - started, result.stdout


def bare_socket_seconds(path: Path, token: str) -> float:
    """The same upload to bench/documents/bare_socket.py: no HTTP server at all."""
    server = subprocess.Popen([sys.executable, "-m", "bench.documents.bare_socket"],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        port = int(server.stdout.readline())
        seconds, status = post_file(f"http://127.0.0.1:{port}/", path, token)
        assert status == "200", status
        server.wait(timeout=30)
    finally:
        server.kill()
    return seconds


def _answers(url: str) -> bool:
    try:
        return requests.post(url, data=b"", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="sluice-bench-docs-"))
    print(f"process logs: {workdir}", flush=True)
    base_db = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
    redis.Redis.from_url(redis_url).flushdb()
    database_url = fresh_postgres_database(base_db, "sluice_bench_docs")
    env = clean_environment(
        DATABASE_URL=database_url, REDIS_URL=redis_url, SECRET_KEY="bench",
        DATA_KEYS=DATA_KEYS, INDEX_KEY=INDEX_KEY,
        SLUICE_INSTANCE_PATH=str(workdir / "instance"), STORAGE_DIR=str(workdir / "storage"),
        DOCUMENT_MAX_BYTES=str((SIZE_MB + 1) * MB), PORT=str(free_port()),
        LOG_LEVEL="WARNING", PROMETHEUS_MULTIPROC_DIR=str(workdir / "metrics"))
    stack = Stack(workdir, env, printed_log_lines=0)
    stack.release()
    token = subprocess.run(
        ["flask", "--app", "webapp", "clients", "create", "bench", "--scopes",
         "documents:write"], env=env, capture_output=True, text=True, check=True,
    ).stdout.rsplit(" ", 1)[1].strip()
    path = workdir / "upload.bin"
    make_file(path)
    sha256_seconds(path)  # warm the page cache for every measurement

    stack.start("web")
    stack.wait_ready()
    for _ in range(8):  # as in production, where Prometheus scrapes every web process
        assert requests.get(stack.url("/metrics"), timeout=30).status_code == 200
    idle_rss = peak_rss_mb(stack.processes["web"].pid)
    ceiling = Stack(workdir / "ceiling", {**env, "PORT": str(free_port())},
                    printed_log_lines=0)
    ceiling.start("web", command=["gunicorn", "-c", "gunicorn.conf.py",
                                  "bench.documents.ceiling:app"])
    wait_for(lambda: _answers(ceiling.url("/")), timeout=30, what="the ceiling app")
    writing = Stack(workdir / "ceiling-writing", {**env, "PORT": str(free_port())},
                    printed_log_lines=0)
    writing.start("web", command=["gunicorn", "-c", "gunicorn.conf.py",
                                  "bench.documents.ceiling:writing"])
    wait_for(lambda: _answers(writing.url("/")), timeout=30, what="the writing ceiling app")
    rounds = []
    for _ in range(ROUNDS):  # alternated, so a slow spell of the machine hits all of them
        # Each measurement starts with no dirty pages to write back: otherwise one that
        # follows a writer pays for the writer's file (and the order decides the ratios).
        hash_s = sha256_seconds(path)
        os.sync()
        web_cpu = process_cpu(stack.processes["web"].pid)
        upload_s, status = post_file(stack.url("/v1/documents"), path, token)
        web_cpu = process_cpu(stack.processes["web"].pid) - web_cpu
        os.sync()
        body_s, raw_status = post_raw(stack.url("/v1/documents"), path, token)
        assert raw_status in ("200", "201"), f"raw-body upload answered {raw_status}"
        os.sync()
        ceiling_s, _ = post_file(ceiling.url("/"), path, token)
        os.sync()
        writing_s, _ = post_raw(writing.url("/"), path, token)
        os.sync()
        socket_s = bare_socket_seconds(path, token)
        rounds.append({"sha256": hash_s, "upload": upload_s, "raw": body_s,
                       "ceiling": ceiling_s, "writing": writing_s,
                       "socket": socket_s, "status": status,
                       "web_cpu_ms_per_mib": 1000 * web_cpu / SIZE_MB})
    rss = peak_rss_mb(stack.processes["web"].pid)
    stack.stop()
    ceiling.stop()
    writing.stop()

    clamd = Clamd(workdir / "clamd", max_mb=SIZE_MB + 16).start()
    client = client_from_url(clamd.url, timeout=600)
    try:
        client.scan_stream(open(path, "rb"))  # warm-up: clamd's first scan is slower
        raw, ours, clamd_cpu = [], [], []
        for _ in range(2):  # alternate, best of two each
            seconds, raw_reply = raw_instream_seconds(str(clamd.socket), path)
            raw.append(seconds)
            started, cpu = time.perf_counter(), process_cpu(clamd.process.pid)
            with path.open("rb") as handle:
                verdict = client.scan_stream(handle)
            ours.append(time.perf_counter() - started)
            clamd_cpu.append(1000 * (process_cpu(clamd.process.pid) - cpu) / SIZE_MB)
        raw_s, ours_s = min(raw), min(ours)
        backends = compare_backends(workdir, env, path, token, client)
    finally:
        clamd.stop()

    print("\n== bench/documents ==")
    print(f"file: {SIZE_MB} MiB of random text; {ROUNDS} alternating rounds; "
          "ratios are median (range)")
    for number, r in enumerate(rounds, 1):
        print(f"round {number}: sha256 {SIZE_MB / r['sha256']:5.0f} MiB/s | upload "
              f"{SIZE_MB / r['upload']:4.0f} (HTTP {r['status']}) | raw body "
              f"{SIZE_MB / r['raw']:4.0f} | gunicorn ceiling "
              f"{SIZE_MB / r['ceiling']:4.0f} | bare socket {SIZE_MB / r['socket']:4.0f} MiB/s")

    def ratio(name):
        return spread([r["sha256"] / r[name] for r in rounds], "{:.2f}")
    print(f"upload (hash+store, HTTP) vs sha256: {ratio('upload')} (target >= 0.7)")
    print(f"raw-body upload vs sha256:           {ratio('raw')}; vs the gunicorn ceiling "
          f"{spread([r['ceiling'] / r['raw'] for r in rounds], '{:.2f}')} (target >= 0.8)")
    print(f"gunicorn read+sha256 only vs sha256: {ratio('ceiling')} (the ceiling for any "
          "upload through gunicorn)")
    print(f"gunicorn read+sha256+write vs sha256: {ratio('writing')}; the raw-body upload "
          f"reaches {spread([r['writing'] / r['raw'] for r in rounds], '{:.2f}')} of it "
          "(what keeping the bytes costs)")
    print(f"socket recv+sha256+write vs sha256:  {ratio('socket')} (no HTTP server: the "
          "ceiling for any upload on this machine)")
    print(f"web worker peak RSS       {rss:7.1f} MB (target < 100; {idle_rss:.1f} MB "
          "before the upload)")
    print(f"raw INSTREAM              {SIZE_MB / raw_s:7.0f} MiB/s  ({raw_reply!r})")
    print(f"scan_stream (ours)        {SIZE_MB / ours_s:7.0f} MiB/s   ratio "
          f"{raw_s / ours_s:.2f} (target >= 0.9)  verdict {verdict.status}")
    for kind in ("file", "s3"):
        b = backends[kind]
        print(f"{kind:>4}: upload {spread([SIZE_MB / s for s in b['upload']])} MiB/s, scan "
              f"{spread([SIZE_MB / s for s in b['scan']])} MiB/s, web peak RSS "
              f"{b['rss']:.1f} MB")
    web_cpu_per_mib = statistics.median(r["web_cpu_ms_per_mib"] for r in rounds)
    print(f"CPU per MiB (for docs/capacity.md): an upload costs the web "
          f"{web_cpu_per_mib:.2f} ms, a scan costs clamd {min(clamd_cpu):.2f} ms")
    client_rss = boto3_client_rss_mb()
    extra = backends["s3"]["rss"] - backends["file"]["rss"]
    print(f"s3 web's extra peak RSS  {extra:7.1f} MB; boto3 + an S3 client alone add "
          f"{client_rss:.1f} MB to a bare process (the ceiling: what any boto3 user pays)")
    upload_ratio = [f / s for f, s in zip(backends["file"]["upload"], backends["s3"]["upload"])]
    scan_ratio = [f / s for f, s in zip(backends["file"]["scan"], backends["s3"]["scan"])]
    print(f"s3 / file: upload {spread(upload_ratio, '{:.2f}')}, scan "
          f"{spread(scan_ratio, '{:.2f}')} (throughput ratios)")
    print(f"RESULT documents size_mb={SIZE_MB} "
          f"upload_ratio={statistics.median([r['sha256'] / r['upload'] for r in rounds]):.2f} "
          f"raw_to_ceiling={statistics.median([r['ceiling'] / r['raw'] for r in rounds]):.2f} "
          f"raw_to_writing_ceiling="
          f"{statistics.median([r['writing'] / r['raw'] for r in rounds]):.2f} "
          f"web_peak_rss_mb={rss:.1f} scan_ratio={raw_s / ours_s:.2f} "
          f"s3_upload_ratio={statistics.median(upload_ratio):.2f} "
          f"s3_scan_ratio={statistics.median(scan_ratio):.2f} "
          f"s3_web_peak_rss_mb={backends['s3']['rss']:.1f} "
          f"file_web_peak_rss_mb={backends['file']['rss']:.1f} "
          f"boto3_client_rss_mb={client_rss:.1f} "
          f"web_cpu_ms_per_upload_mib={web_cpu_per_mib:.2f} "
          f"clamd_cpu_ms_per_scan_mib={min(clamd_cpu):.2f}")


def compare_backends(workdir: Path, env: dict, path: Path, token: str, scanner) -> dict:
    """The same upload and scan on file:// and on s3:// (moto on loopback), alternated."""
    moto = MotoS3(workdir).start()
    moto.bucket("bench")
    configs = {"file": {"STORAGE_DIR": str(workdir / "storage-cmp")},
               # moto answers a 1 GiB CompleteMultipartUpload only once it has joined
               # the parts, silent for longer than the default read wait
               # (STORAGE_REQUEST_TIMEOUT 20 s: 7 s); S3 itself sends whitespace
               # while it works, so the default holds there
               "s3": {**MotoS3.ENV, "STORAGE_URL": "s3://bench/docs",
                      "S3_ENDPOINT_URL": moto.endpoint, "STORAGE_REQUEST_TIMEOUT": "120"}}
    os.environ.update(MotoS3.ENV)  # for the bench's own client of the store
    webs, stores = {}, {}
    for kind, settings in configs.items():
        host_env = {**env, **settings, "PORT": str(free_port())}
        webs[kind] = Stack(workdir / f"web-{kind}", host_env, printed_log_lines=0)
        webs[kind].start("web")
        webs[kind].wait_ready()
        stores[kind] = from_config({"STORAGE_URL": settings.get("STORAGE_URL") or
                                    Path(settings["STORAGE_DIR"]).as_uri(),
                                    "SPOOL_DIR": str(workdir / "spool-bench"),
                                    "S3_ENDPOINT_URL": settings.get("S3_ENDPOINT_URL")})
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(MB):
            digest.update(chunk)
    sha256 = digest.hexdigest()
    figures = {kind: {"upload": [], "scan": []} for kind in configs}
    try:
        for _ in range(ROUNDS):
            for kind in configs:
                if stores[kind].exists(sha256):
                    stores[kind].delete(sha256)  # every round stores the bytes again
                seconds, status = post_file(webs[kind].url("/v1/documents"), path, token)
                assert status in ("200", "201"), (kind, status)
                figures[kind]["upload"].append(seconds)
                started = time.perf_counter()
                with stores[kind].open(sha256) as blob:
                    verdict = scanner.scan_stream(blob)
                figures[kind]["scan"].append(time.perf_counter() - started)
                assert verdict.status == "clean", verdict
        for kind in configs:
            figures[kind]["rss"] = peak_rss_mb(webs[kind].processes["web"].pid)
    finally:
        for web in webs.values():
            web.stop()
        moto.stop()
    return figures


if __name__ == "__main__":
    main()
