"""ClamAV client: connection from `CLAMD_URL` (`unix:///path` or `tcp://host:3310`).

Built on the `clamd` package. Version 1.0.2 (the latest) connects *before* it sets
the socket timeout, so an unreachable clamd blocks for the kernel's connect
timeout, and it writes commands with `send`, which may write only part of them.
The two subclasses below replace exactly those two methods.
"""
from __future__ import annotations

import socket
from urllib.parse import urlsplit

import clamd


class _CommandsWithSendall:
    def _send_command(self, cmd, *args):
        line = "n{}{}\n".format(cmd, (" " + " ".join(args)) if args else "")
        self.clamd_socket.sendall(line.encode("utf-8"))


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
