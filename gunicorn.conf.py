"""gunicorn settings for the `web` process (production and `make run` alike).

Environment: HOST (default 127.0.0.1), PORT (5000), WEB_CONCURRENCY (worker
processes, 2), WEB_THREADS (threads per worker, 4), PROMETHEUS_MULTIPROC_DIR.
"""
import os
import shutil
import tempfile

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 30
graceful_timeout = 20
keepalive = 5
# What one request may send before it reaches the app (gunicorn's defaults, stated):
# a request line over 4094 bytes, more than 100 header fields, or one field over
# 8190 bytes is refused with 4xx. gunicorn has no timeout for reading a request's
# headers or body: a slow client holds a thread for as long as it likes, which is
# why the open internet reaches these processes only through the buffering front
# (deploy/nginx/sluice.conf.template).
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
accesslog = None  # the app logs each request itself, as redacted JSON
errorlog = "-"
# gunicorn 24+ opens a control socket at one fixed path per user; we do not use
# it, and two servers on one host (tests, blue/green) would fight over it.
control_socket_disable = True


def on_starting(server):
    # Metrics from every worker are aggregated through files in this directory;
    # it must exist, and be empty, before any worker imports prometheus_client.
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
    else:
        directory = tempfile.mkdtemp(prefix="sluice-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    os.makedirs(directory, exist_ok=True)
    # A configuration error stops the server here, as one line, before any worker
    # boots (a worker that fails to import is otherwise restarted, with a traceback
    # each time). Only settings and sources are read: nothing connects.
    from webapp import instance_path
    from webapp.config import check_startup, exit_on_config_error

    with exit_on_config_error():
        check_startup(os.environ, instance_path())


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


# glibc's mallopt(M_ARENA_MAX): how many malloc arenas the process's threads share.
_M_ARENA_MAX, _ARENAS = -8, 2


def post_fork(server, worker):
    # Each request thread may hold one database connection at a time (one more for
    # whatever else the process does). Past its pool size, SQLAlchemy's pool opens
    # overflow connections and closes them again as they come back: under load every
    # such checkout was a new PostgreSQL connection (bench/ingest, WEB_THREADS=8).
    # The app is built after this hook, in the worker, and reads it from the env.
    os.environ.setdefault("DATABASE_POOL_SIZE", str(worker.cfg.threads + 1))
    # Upload buffers are 1 MiB (webapp/uploads.py, and gunicorn's own body reads).
    # By default glibc gives each thread an arena of its own, up to 8 per core, and
    # a worker's RSS grew by every thread's buffers and kept the growth. Two shared
    # arenas bound that while freed buffers are reused. A fixed mmap threshold bounds
    # it too, but mmaps and faults in every buffer anew: it halved upload
    # throughput (bench/documents). Not glibc (musl, macOS): nothing to do.
    import ctypes

    try:
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, _ARENAS)
    except (OSError, AttributeError):
        pass


def post_worker_init(worker):
    # The app is built: its hundred thousand objects (modules, SQLAlchemy's
    # mapped tables, Flask's routing) live as long as the worker. Python's full
    # (oldest-generation) collections walk every one of them while holding the GIL,
    # which stalled every request of the process at once for as long as the walk took
    # (bench/ingest's p99). Frozen, they are left out of every later collection;
    # collecting first keeps start-up garbage from being frozen with them.
    import gc

    gc.collect()
    gc.freeze()
