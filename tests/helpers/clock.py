"""A clock the tests move instead of sleeping past a TTL."""
from __future__ import annotations

import time

import itsdangerous.timed


class SignerClock:
    """itsdangerous's clock (signed links, console cookies), `ahead` seconds in the future:
    it reads time.time() through its own module's `time`, which is what this replaces."""

    def __init__(self, monkeypatch):
        self.ahead = 0.0
        monkeypatch.setattr(itsdangerous.timed, "time", self)

    def time(self) -> float:
        return time.time() + self.ahead
