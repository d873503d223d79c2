"""The ingest app with sealing off, for bench/ingest's encryption_ratio alone: its
sealed columns store their plaintext, as before store/sealing.py. The same app,
configuration and gunicorn settings otherwise, so the two servers differ only in the
cost of sealing. Never for a deployment: nothing else in the service turns it off."""
from store import sealing
from webapp import create_app


class _InClear:
    """A key ring that seals nothing (the bench's bodies are ASCII JSON)."""

    ids = ("clear",)
    primary = "clear"

    def seal(self, plain: bytes) -> str:
        return plain.decode("utf-8")

    def open(self, stored: str) -> bytes:
        return stored.encode("utf-8")


app = create_app()
sealing.install(_InClear(), sealing.parse_index_key(app.config["INDEX_KEY"]))
