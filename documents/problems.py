"""Refusals that carry a machine-readable code for the API and the import report."""
from __future__ import annotations


class Problem(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
