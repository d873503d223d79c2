"""gunicorn settings for the `hooks` process: webhook ingestion's own capacity.

The same server and app as `web` (gunicorn.conf.py: limits, hooks, metrics), on a
port and a pool of its own, so the front can send /webhooks/ here and no flood of
uploads or imports on `web` can hold the threads that answer payment providers.

Environment: HOOKS_PORT (5001), HOOKS_CONCURRENCY (worker processes, 2),
HOOKS_THREADS (threads per worker, 4); HOST and the rest as for `web`.
"""
import os
import runpy
from pathlib import Path

globals().update({name: value for name, value in runpy.run_path(
    str(Path(__file__).with_name("gunicorn.conf.py"))).items() if not name.startswith("__")})

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('HOOKS_PORT', '5001')}"
workers = int(os.environ.get("HOOKS_CONCURRENCY", "2"))
threads = int(os.environ.get("HOOKS_THREADS", "4"))
proc_name = "sluice-hooks"
# Its own metrics directory: gunicorn.conf.py empties the directory when a server
# starts, and `web` on the same host must not lose this one's files, nor it web's.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ["PROMETHEUS_MULTIPROC_DIR"] + "-hooks"
