"""ClamAV client: connection from `CLAMD_URL` (`unix:///path` or `tcp://host:3310`).

Built on the `clamd` package. Version 1.0.2 (the latest) connects *before* it sets
the socket timeout, so an unreachable clamd blocks for the kernel's connect
timeout; it writes with `send`, which may write only part of a buffer; and its
INSTREAM sends 1 KB chunks and loses clamd's answer when clamd closes the socket
at StreamMaxLength. The subclasses below replace exactly those methods.

A verdict is read by status, never by signature name: only `OK` is clean.
"""
from __future__ import annotations

import dataclasses
import re
import socket
import struct
import sys
from typing import BinaryIO
from urllib.parse import urlsplit


def _import_clamd():
    """`import clamd`, without the pkg_resources it loads only to read its own version.

    clamd 1.0.2 does that inside a bare try/except. pkg_resources indexes every
    installed distribution when imported, memory and start-up time in each web
    worker, which imports this module for /readyz. A None in sys.modules makes that import
    fail, and clamd sets its __version__ to ''.
    """
    if "clamd" in sys.modules or "pkg_resources" in sys.modules:
        import clamd
        return clamd
    sys.modules["pkg_resources"] = None
    try:
        import clamd
    finally:
        del sys.modules["pkg_resources"]
    return clamd


clamd = _import_clamd()

CHUNK = 64 * 1024
CLEAN, INFECTED, ERROR = "clean", "infected", "error"
_FOUND = re.compile(r"^stream: (?P<name>.+) FOUND$")


@dataclasses.dataclass(frozen=True)
class Verdict:
    status: str                # clean | infected | error
    signature: str | None = None
    detail: str = ""


def parse_reply(reply: str) -> Verdict:
    """clamd's answer to INSTREAM. Anything but a plain OK or FOUND is an error."""
    reply = reply.strip().rstrip("\0").strip()
    if reply == "stream: OK":
        return Verdict(CLEAN)
    found = _FOUND.match(reply)
    if found and not found.group("name").startswith("Heuristics.Limits"):
        return Verdict(INFECTED, found.group("name")[:255])
    # ERROR lines, empty replies, and limit heuristics (clamd could not read it all).
    return Verdict(ERROR, detail=reply[:200] or "no answer from clamd")


class _CommandsWithSendall:
    def _send_command(self, cmd, *args):
        line = "n{}{}\n".format(cmd, (" " + " ".join(args)) if args else "")
        self.clamd_socket.sendall(line.encode("utf-8"))

    def scan_stream(self, stream: BinaryIO, chunk_size: int = CHUNK) -> Verdict:
        """INSTREAM `stream` in chunks; connection trouble is an error, never clean."""
        try:
            self._init_socket()
        except clamd.ConnectionError as exc:
            return Verdict(ERROR, detail=str(exc)[:200])
        try:
            self._send_command("INSTREAM")
            try:
                while chunk := stream.read(chunk_size):
                    self.clamd_socket.sendall(struct.pack("!L", len(chunk)) + chunk)
                self.clamd_socket.sendall(struct.pack("!L", 0))
            except (BrokenPipeError, ConnectionResetError):
                pass  # clamd hung up (size limit): its reason is still in the reply
            return parse_reply(self._read_reply())
        except OSError as exc:
            return Verdict(ERROR, detail=type(exc).__name__)
        finally:
            self.clamd_socket.close()

    def _read_reply(self) -> str:
        data = b""
        while not data.endswith((b"\n", b"\0")):
            piece = self.clamd_socket.recv(4096)
            if not piece:
                break
            data += piece
        return data.decode("utf-8", "replace")


class TimelyClamdNetworkSocket(_CommandsWithSendall, clamd.ClamdNetworkSocket):
    def _init_socket(self):
        try:
            self.clamd_socket = socket.create_connection(
                (self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise clamd.ConnectionError(self._error_message(exc)) from exc


class TimelyClamdUnixSocket(_CommandsWithSendall, clamd.ClamdUnixSocket):
    def _init_socket(self):
        self.clamd_socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.clamd_socket.settimeout(self.timeout)
        try:
            self.clamd_socket.connect(self.unix_socket)
        except OSError as exc:
            self.clamd_socket.close()
            raise clamd.ConnectionError(self._error_message(exc)) from exc


def client_from_url(url: str, timeout: float) -> clamd.ClamdNetworkSocket:
    """Build a clamd client; raises ValueError for a URL we cannot use."""
    parts = urlsplit(url)
    if parts.scheme == "unix" and parts.path:
        return TimelyClamdUnixSocket(path=parts.path, timeout=timeout)
    if parts.scheme == "tcp" and parts.hostname:
        return TimelyClamdNetworkSocket(host=parts.hostname, port=parts.port or 3310,
                                        timeout=timeout)
    raise ValueError("CLAMD_URL must be unix:///path or tcp://host:port")
