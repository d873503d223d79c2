"""What gunicorn.conf.py's hooks do to a worker process (the `web` and `hooks` servers
share them)."""
import json
import subprocess
import sys
from pathlib import Path

CONF = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


def run_hooks(script: str) -> dict:
    result = subprocess.run([sys.executable, "-c", f"""
import gc, json, os, runpy, types
conf = runpy.run_path({str(CONF)!r})
worker = types.SimpleNamespace(cfg=types.SimpleNamespace(threads=6))
{script}
"""], capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"})
    return json.loads(result.stdout.splitlines()[-1])


def test_a_worker_sizes_its_database_pool_to_its_threads():
    seen = run_hooks("""
conf["post_fork"](None, worker)
print(json.dumps({"pool": os.environ["DATABASE_POOL_SIZE"]}))""")
    assert seen == {"pool": "7"}


def test_a_worker_freezes_what_it_built_before_serving():
    seen = run_hooks("""
from webapp import create_app
app = create_app({"SECRET_KEY": "x", "REDIS_URL": "redis://127.0.0.1:1/0",
                  "DATABASE_URL": "sqlite://"})
before = gc.get_freeze_count()
conf["post_worker_init"](worker)
print(json.dumps({"before": before, "after": gc.get_freeze_count()}))""")
    assert seen["before"] == 0
    assert seen["after"] > 50_000  # the app's objects, left out of later collections
