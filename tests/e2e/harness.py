"""Start the Procfile's processes for real and talk to them over HTTP.

The commands come from the Procfile itself, so these tests exercise exactly what
production and `make run` run.
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import requests

from tests.services import wait_for
from webapp.config import DEFAULTS

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def procfile() -> dict[str, str]:
    entries = {}
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = command.strip()
    return entries


# What an in-test app needs of a stack's environment to read and write what the
# stack's processes do (its database, Redis, and the keys that sign and seal).
APP_SETTINGS = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DATA_KEYS", "INDEX_KEY")


def app_settings(env: dict[str, str], *extra: str) -> dict[str, str]:
    """The settings of `env` an in-test create_app takes, and the `extra` ones."""
    return {key: env[key] for key in (*APP_SETTINGS, *extra)}


def clean_environment(**overrides: str) -> dict[str, str]:
    """The test runner's environment without any Sluice settings, plus `overrides`."""
    env = {k: v for k, v in os.environ.items()
           if k not in DEFAULTS and k not in {"SLUICE_INSTANCE_PATH", "PROMETHEUS_MULTIPROC_DIR"}}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(overrides)
    return env


class Stack:
    def __init__(self, workdir: Path, env: dict[str, str], printed_log_lines: int = 30):
        """`printed_log_lines`: how many of each log's last lines stop() prints (pytest
        shows them with a failure); the benchmarks pass 0 and say where the logs are."""
        self.workdir = workdir
        self.env = env
        self.printed_log_lines = printed_log_lines
        self.port = int(env["PORT"])
        self.processes: dict[str, subprocess.Popen] = {}
        workdir.mkdir(parents=True, exist_ok=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def release(self) -> None:
        result = subprocess.run(shlex.split(procfile()["release"]), cwd=REPO, env=self.env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"release failed:\n{result.stderr[-3000:]}"

    def start(self, *names: str, command: list[str] | None = None) -> "Stack":
        """Start Procfile entries by name, or one explicit `command` under the first name."""
        for name in names:
            log = open(self.workdir / f"{name}.log", "ab")
            argv = command or shlex.split(procfile()[name])
            self.processes[name] = subprocess.Popen(
                argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)  # its own group: we stop children with it
        return self

    def wait_ready(self, timeout: float = 60, components: tuple[str, ...] = ()) -> dict:
        """/readyz's body once it answers 200 and each of `components` reads ok.

        A component may read "Timeout" at first: a fresh process's first store check
        builds its S3 client, which on a loaded machine outlasts the probe's deadline
        (CI saw it), so a test that needs one waits for it by name."""
        def ready():
            self.assert_running()
            try:
                response = requests.get(self.url("/readyz"), timeout=2)
            except (requests.ConnectionError, requests.Timeout):
                return None
            if response.status_code != 200:
                return None
            body = response.json()
            return body if all(body["components"][name]["status"] == "ok"
                               for name in components) else None
        return wait_for(ready, timeout=timeout, interval=0.2, what="/readyz")

    def metric(self, name: str) -> float:
        """A counter from the web's /metrics, summed over its labels."""
        text = requests.get(self.url("/metrics"), timeout=10).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name + " ") or line.startswith(name + "{"))

    def assert_running(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}:\n"
                                     f"{self.log_tail(name)}")

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self, name: str, lines: int = 60) -> str:
        return "\n".join(self.log(name).splitlines()[-lines:])

    def stop(self) -> None:
        for process in self.processes.values():
            _signal_group(process, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=10)
        kept = os.environ.get("SLUICE_TEST_LOG_DIR")  # scanned for leaks at the end of the run
        for name in self.processes:
            if self.printed_log_lines:
                print(f"----- {name} (last lines) -----\n"
                      f"{self.log_tail(name, self.printed_log_lines)}")
            if kept and (self.workdir / f"{name}.log").exists():
                shutil.copy(self.workdir / f"{name}.log",
                            Path(kept) / f"stack-{uuid.uuid4().hex[:8]}-{name}.log")
        self.processes.clear()


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
