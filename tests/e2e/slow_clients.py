"""Slow and hostile HTTP clients, on raw sockets, for the slow-clients fault scenario.

Each client binds its own loopback address (all of 127.0.0.0/8 reaches the local
servers on Linux), so per-address limits see an attacker, several users on slow
links and the provider as the different clients they are.
"""
from __future__ import annotations

import math
import select
import socket
import threading
import time

import requests


def connect(port: int, source: str, timeout: float = 10) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


class Slowloris:
    """`count` connections that send a request's headers one line every `interval`
    seconds and never finish them; one the server closes is opened again at once."""

    def __init__(self, port: int, count: int = 200, source: str = "127.0.0.2",
                 interval: float = 5.0):
        self.port, self.count, self.source, self.interval = port, count, source, interval
        self.closed_by_server = 0
        self._sockets: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Slowloris":
        self._sockets = [self._open() for _ in range(self.count)]
        self._thread.start()
        return self

    def _open(self) -> socket.socket:
        sock = connect(self.port, self.source)
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: sluice\r\nUser-Agent: slowloris\r\n")
        sock.setblocking(False)
        return sock

    def _run(self) -> None:
        line = 0
        while not self._stopping.wait(self.interval):
            line += 1
            for index, sock in enumerate(self._sockets):
                try:
                    readable, _, _ = select.select([sock], [], [], 0)
                    if readable:  # an answer (408) or a close: the server let go
                        sock.recv(65536)
                        raise ConnectionError
                    sock.send(f"X-Slow-{line}: {'a' * 20}\r\n".encode())
                except OSError:
                    sock.close()
                    self.closed_by_server += 1
                    try:
                        self._sockets[index] = self._open()
                    except OSError:
                        pass

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=30)
        for sock in self._sockets:
            sock.close()


def text_body(size: int, tag: str, chunk: int = 64 * 1024):
    """`size` bytes of plain text whose first line is `tag` (so each body is new bytes)."""
    line = b"the quick brown fox jumps over the lazy dog, again and again\n"
    block = (line * (chunk // len(line) + 1))[:chunk]
    first = (f"{tag}\n".encode() + block)[:chunk]
    sent = 0
    while sent < size:
        piece = (first if sent == 0 else block)[:size - sent]
        sent += len(piece)
        yield piece


class SlowUpload(threading.Thread):
    """A raw-body document upload of `size` bytes sent at `rate` bytes per second, as a
    phone on a slow link sends it; records the answer's status and the duration."""

    def __init__(self, port: int, source: str, token: str, size: int, rate: float,
                 tag: str, give_up_after: float):
        super().__init__(daemon=True)
        self.port, self.source, self.token, self.size, self.rate = port, source, token, size, rate
        self.tag, self.give_up_after = tag, give_up_after
        self.status: int | None = None
        self.seconds: float | None = None
        self.error: str | None = None

    def run(self) -> None:
        started = time.monotonic()
        try:
            sock = connect(self.port, self.source, timeout=self.give_up_after)
            with sock:
                sock.sendall((
                    "POST /v1/documents HTTP/1.1\r\nHost: sluice\r\n"
                    f"Authorization: Bearer {self.token}\r\nContent-Type: text/plain\r\n"
                    f"Content-Disposition: attachment; filename=\"{self.tag}.txt\"\r\n"
                    f"Content-Length: {self.size}\r\nConnection: close\r\n\r\n").encode())
                sent = 0
                for piece in text_body(self.size, self.tag):
                    sock.sendall(piece)
                    sent += len(piece)
                    ahead = sent / self.rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
                    if time.monotonic() - started > self.give_up_after:
                        raise TimeoutError("gave up sending")
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
                self.status = int(answer.split(b" ", 2)[1])
        except (OSError, ValueError, IndexError) as exc:
            self.error = type(exc).__name__
        self.seconds = time.monotonic() - started


class Probe:
    """GET `url` every `interval` seconds, recording how long each answer took."""

    def __init__(self, url: str, interval: float = 0.5, timeout: float = 10):
        self.url, self.interval, self.timeout = url, interval, timeout
        self.latencies: list[float] = []
        self.failures = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Probe":
        self._thread.start()
        return self

    def _run(self) -> None:
        session = requests.Session()
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                ok = session.get(self.url, timeout=self.timeout).status_code == 200
            except requests.RequestException:
                ok = False
                session.close()
            self.latencies.append(time.monotonic() - started)
            self.failures += not ok
            self._stopping.wait(self.interval)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=self.timeout + 5)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] if ordered else math.nan
