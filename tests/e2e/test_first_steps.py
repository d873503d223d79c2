"""The README's "First steps", word for word, on `make run`'s embedded default.

`make run` (SQLite, the embedded Redis, web, worker, deliver and beat under honcho), then
`flask clients create oncall --scopes admin`, `cp sources.example.toml
instance/sources.toml`, `make run` again with STRIPE_WEBHOOK_SECRET set, sign in to
the console with the token, and press "Send test delivery" for `stripe`: the event
opens at once and turns `processed`. Only the instance folder and the port differ
from what a newcomer types, so that runs do not collide.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest
import redis
import requests

from tests.e2e.harness import REPO, Stack, clean_environment
from tests.services import free_port, wait_for
from webapp.embedded import socket_path

pytestmark = pytest.mark.e2e

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_run(workdir, env) -> Stack:
    stack = Stack(workdir, env)
    stack.start("make", command=["make", "--no-print-directory", "run", f"PORT={env['PORT']}"])
    stack.wait_ready(timeout=120)
    return stack


def make(target: str, env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", target, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def csrf(session: requests.Session, url: str) -> str:
    page = session.get(url, timeout=10)
    assert page.status_code == 200, (url, page.status_code)
    return CSRF.search(page.text).group(1)


def redis_answers(instance) -> bool:
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path(str(instance))),
                                socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


@pytest.fixture
def newcomer(tmp_path):
    instance = tmp_path / "instance"
    env = clean_environment(SLUICE_INSTANCE_PATH=str(instance), PORT=str(free_port()))
    yield instance, env
    if redis_answers(instance):
        redis.Redis(unix_socket_path=str(socket_path(str(instance)))).shutdown(nosave=True)


def test_the_readmes_first_steps_work_on_the_embedded_default(newcomer, tmp_path):
    instance, env = newcomer
    first = make_run(tmp_path / "run-1", env)
    try:
        created = subprocess.run(
            [str(REPO / ".venv" / "bin" / "flask"), "--app", "webapp", "clients", "create",
             "oncall", "--scopes", "admin"], cwd=REPO, env=env, capture_output=True,
            text=True, timeout=60)
        assert created.returncode == 0, created.stderr
        token = re.search(r"slc_[\w-]+", created.stdout).group()
        shutil.copy(REPO / "sources.example.toml", instance / "sources.toml")
        # `make stop` from another shell stops everything `make run` started.
        stopped = make("stop", env)
        assert stopped.returncode == 0 and "Error" not in stopped.stdout + stopped.stderr
        assert "stopped web, worker, enrich, deliver and beat" in stopped.stdout
        assert "stopped the embedded Redis" in stopped.stdout
        first.processes["make"].wait(timeout=30)
        with pytest.raises(requests.ConnectionError):
            requests.get(first.url("/livez"), timeout=2)
        assert not socket_path(str(instance)).exists() or not redis_answers(instance)
    finally:
        first.stop()
    said = first.log("make")
    assert "webhook sources: none configured (copy sources.example.toml to" in said
    assert "clamd:" in said and "(Ctrl-C, or make stop, stops it)" in said

    second = make_run(tmp_path / "run-2", {**env, "STRIPE_WEBHOOK_SECRET": "whsec_try_it_out"})
    try:
        browser = requests.Session()
        signed_in = browser.post(second.url("/ops/sign-in"), timeout=10, data={
            "token": token, "csrf_token": csrf(browser, second.url("/ops/sign-in"))})
        assert signed_in.status_code == 200 and "/ops/" in signed_in.url
        started = time.monotonic()
        sent = browser.post(second.url("/ops/sources/stripe/test"), timeout=30,
                            allow_redirects=False,
                            data={"csrf_token": csrf(browser, second.url("/ops/sources"))})
        seconds = time.monotonic() - started
        assert sent.status_code == 303, sent.text
        assert re.search(r"/ops/events/\d+$", sent.headers["Location"]), (
            sent.headers["Location"], browser.get(second.url("/ops/sources")).text[-2000:])
        assert seconds < 5, f"the test delivery took {seconds:.1f} s"

        def processed():
            page = browser.get(second.url(sent.headers["Location"]), timeout=10)
            return page.text if "processed" in page.text else None
        wait_for(processed, timeout=30, interval=0.5, what="the test event to be processed")

        again = make("run", env, f"PORT={env['PORT']}")  # a second make run, same port
        assert again.returncode != 0
        assert "sluice is already running here" in again.stderr, again.stderr
        assert "Connection in use" not in again.stderr + again.stdout
    finally:
        second.stop()
    assert "stripe (stripe): secret set" in second.log("make")
