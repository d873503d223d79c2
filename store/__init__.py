"""The kernel every package builds on: the declarative base and column types, the
engine, insert helpers, the transactional outbox, the audit log, the names of the
background tasks, the rules for reading untrusted payloads, what a signature scheme
declares, and the guarded HTTP client for anything fetched from or sent outside
(fetch.py: allowlists, no private addresses, every redirect checked, byte caps).

It imports nothing else of Sluice's (import-linter checks it), so any package may
use it and it can never be the middle of an import cycle.
"""
