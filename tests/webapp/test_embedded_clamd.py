"""`make run`'s scanner: the system's clamd, or one on the system's signatures, or none."""
import os
import signal
import socket

from tests.services import DATA_DIR, wait_for
from webapp.embedded import local_clamd


def test_a_running_system_clamd_is_used(tmp_path):
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(tmp_path / "clamd.ctl"))
    try:
        url, message = local_clamd(str(tmp_path / "instance"), system_socket=tmp_path / "clamd.ctl",
                                   definitions=tmp_path / "none")
    finally:
        listening.close()
    assert url == f"unix://{tmp_path / 'clamd.ctl'}" and "the system's" in message


def test_without_signatures_documents_are_said_to_wait(tmp_path):
    url, message = local_clamd(str(tmp_path), system_socket=tmp_path / "no.ctl",
                               definitions=tmp_path)
    assert url is None and "pending_scan" in message


def test_a_clamd_of_our_own_starts_on_the_machines_signatures(tmp_path, clamd_url):
    # clamd_url: the system's clamd binary is installed (the fixture fails in CI if not)
    from documents.scanner import client_from_url

    instance = tmp_path / "instance"
    url, message = local_clamd(str(instance), system_socket=tmp_path / "no.ctl",
                               definitions=DATA_DIR / "clamav")
    pidfile = instance / "clamd" / "clamd.pid"
    try:
        assert url == f"unix://{instance / 'clamd' / 'clamd.sock'}" and "started" in message
        wait_for(lambda: _pong(client_from_url, url), timeout=60, interval=0.5,
                 what="our clamd to answer")
    finally:
        wait_for(pidfile.exists, timeout=30, what="clamd's pid file")
        os.kill(int(pidfile.read_text()), signal.SIGTERM)


def _pong(client_from_url, url: str) -> bool:
    try:
        return client_from_url(url, timeout=1).ping() == "PONG"
    except Exception:
        return False


def test_make_run_names_the_scanner_it_was_given(tmp_path):
    # Reported: with CLAMD_URL set, make run said nothing about the scanner.
    from webapp.embedded import scanner_for_run

    url, message = scanner_for_run(str(tmp_path), {"CLAMD_URL": "tcp://10.0.0.5:3310"})
    assert url == "tcp://10.0.0.5:3310"
    assert message == "clamd: tcp://10.0.0.5:3310 (CLAMD_URL, from the environment)"
