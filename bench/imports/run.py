"""Bulk import benchmark (`make bench`).

1. A BENCH_IMPORT_ENTRIES (default 10,000) entry ZIP of small distinct files,
   posted to gunicorn and run by a real worker on PostgreSQL, scanning excluded
   (the worker consumes only the imports queue; the scan messages are still
   enqueued, one per document). Reports entries ingested per second (from the import's own
   started_at/finished_at), against a baseline measured in the same run: reading
   and hashing every entry with zipfile + hashlib in one process.
2. Manifests of 10,000 and 100,000 rows, CSV and XLSX, each parsed in a fresh
   process: rows per second and peak RSS (flat in row count means streaming),
   against csv.reader over the same CSV.
"""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.e2e.harness import Stack, clean_environment  # noqa: E402
from tests.imports.archives import build, csv_manifest, xlsx_manifest  # noqa: E402
from tests.services import (  # noqa: E402
    DATA_KEYS,
    INDEX_KEY,
    free_port,
    fresh_postgres_database,
    wait_for,
)

ENTRIES = int(os.environ.get("BENCH_IMPORT_ENTRIES", "10000"))
ROWS = (10_000, 100_000)


def make_archive() -> bytes:
    return build([(f"batch/{i:06d}.txt", (f"entry {i}\n" * 20).encode())
                  for i in range(ENTRIES)])


def baseline_entries_per_second(archive: bytes) -> float:
    started = time.perf_counter()
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        for info in opened.infolist():
            with opened.open(info) as member:
                hashlib.sha256(member.read()).hexdigest()
    return ENTRIES / (time.perf_counter() - started)


def import_through_the_stack(workdir: Path, archive: bytes) -> dict:
    base_db = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
    redis.Redis.from_url(redis_url).flushdb()
    env = clean_environment(
        DATABASE_URL=fresh_postgres_database(base_db, "sluice_bench_imports"),
        REDIS_URL=redis_url, SECRET_KEY="bench", DATA_KEYS=DATA_KEYS, INDEX_KEY=INDEX_KEY,
        SLUICE_INSTANCE_PATH=str(workdir / "instance"),
        STORAGE_DIR=str(workdir / "storage"), PORT=str(free_port()), LOG_LEVEL="WARNING",
        PROMETHEUS_MULTIPROC_DIR=str(workdir / "metrics"))
    stack = Stack(workdir, env, printed_log_lines=0)
    stack.release()
    token = subprocess.run(
        ["flask", "--app", "webapp", "clients", "create", "bench", "--scopes", "imports:write"],
        env=env, capture_output=True, text=True, check=True).stdout.rsplit(" ", 1)[1].strip()
    auth = {"Authorization": f"Bearer {token}"}
    stack.start("web")
    # Scanning excluded: this worker takes only the imports queue, so the scan
    # messages each document enqueues wait in the documents queue.
    stack.start("worker", command=["celery", "-A", "tasks.worker", "worker", "-Q", "imports",
                                   "--loglevel", "WARNING"])
    try:
        stack.wait_ready()
        response = requests.post(stack.url("/v1/imports"), headers=auth, timeout=120,
                                 files={"archive": ("bench.zip", archive)})
        assert response.status_code == 202, response.text
        url = stack.url(f"/v1/imports/{response.json()['id']}")
        return wait_for(lambda: (lambda body: body if body["finished_at"] else None)(
            requests.get(url, headers=auth, timeout=10).json()),
            timeout=600, interval=0.5, what="the import")
    finally:
        stack.stop()


PARSE = """
import sys, time
from pathlib import Path
from documents.manifests import read_manifest
path, kind = Path(sys.argv[1]), sys.argv[2]
started = time.perf_counter()
if kind == "raw-csv":
    import csv
    with open(path, encoding="utf-8-sig", newline="") as handle:
        count = sum(1 for _ in csv.reader(handle)) - 1
else:
    count = sum(1 for _ in read_manifest(path, kind, 10 ** 7))
seconds = time.perf_counter() - started
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec from the parent.
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(count, seconds, int(hwm.split()[1]) / 1024)
"""


def parse_in_fresh_process(path: Path, kind: str) -> tuple[int, float, float]:
    out = subprocess.run([sys.executable, "-c", PARSE, str(path), kind], check=True,
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    count, seconds, rss = out.stdout.split()
    return int(count), float(seconds), float(rss)


def manifest_rows(n: int) -> list[dict]:
    return [{"filename": f"batch/{i:06d}.txt", "title": f"Document {i} – Überweisung",
             "external_ref": f"REF-{i}", "tags": "finance;2026;q4"} for i in range(n)]


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="sluice-bench-imports-"))
    print(f"process logs: {workdir}", flush=True)
    archive = make_archive()
    baseline = max(baseline_entries_per_second(archive) for _ in range(2))
    result = import_through_the_stack(workdir, archive)
    print("\n== bench/imports ==")
    print(f"archive: {ENTRIES} entries, {len(archive) / 1024 / 1024:.1f} MiB; import "
          f"{result['status']}: {result['succeeded']} ingested, {result['rejected']} rejected")
    print(f"zipfile read + sha256 alone {baseline:8.0f} entries/s")
    print(f"import (worker, PostgreSQL) {result['rows_per_second']:8.0f} entries/s   ratio "
          f"{result['rows_per_second'] / baseline:.3f} (target >= 300 entries/s)")

    print(f"{'manifest':<22}{'rows/s':>10}{'peak RSS MB':>14}{'vs csv.reader':>15}")
    for rows in ROWS:
        data = manifest_rows(rows)
        csv_path, xlsx_path = workdir / f"m{rows}.csv", workdir / f"m{rows}.xlsx"
        csv_path.write_bytes(csv_manifest(data, bom=True))
        xlsx_path.write_bytes(xlsx_manifest(data))
        _, raw_s, raw_rss = parse_in_fresh_process(csv_path, "raw-csv")
        for kind, path in (("csv", csv_path), ("xlsx", xlsx_path)):
            count, seconds, rss = parse_in_fresh_process(path, kind)
            assert count == rows, (kind, count)
            print(f"{kind} {rows:>7} rows{'':<6}{rows / seconds:>10.0f}{rss:>14.1f}"
                  f"{raw_s / seconds:>15.2f}")
        print(f"csv.reader {rows:>7} rows{rows / raw_s:>10.0f}{raw_rss:>14.1f}")
    print(f"RESULT imports entries_per_second={result['rows_per_second']:.0f} "
          f"ratio_to_zipfile={result['rows_per_second'] / baseline:.3f} entries={ENTRIES}")


if __name__ == "__main__":
    main()
