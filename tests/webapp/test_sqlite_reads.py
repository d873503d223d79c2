"""The embedded default's SQLite: a page or a poll only reads, and never waits for the
database's one write lock (an import commits batch after batch; a request that took the
lock for a read queued behind it for the whole import)."""
from __future__ import annotations

import sqlite3
import time

from store.clients import create_client
from webapp import create_app
from webapp.extensions import db
from webapp.migrate import upgrade


def test_a_get_answers_while_another_process_holds_the_write_lock(
        tmp_path, redis_url, redis_db):
    path = tmp_path / "embedded.db"
    upgrade(f"sqlite:///{path}")
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{path}",
                      "REDIS_URL": redis_url, "SECRET_KEY": "k",
                      "STORAGE_DIR": str(tmp_path / "storage")})
    with app.app_context():
        _, token = create_client(db.session, "reader", ["documents:read", "imports:write"])
        db.session.commit()
    bearer = {"Authorization": f"Bearer {token}"}
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # another process, mid-batch
        started = time.monotonic()
        for path_ in ("/v1/documents", "/v1/imports/1", "/readyz"):
            answer = app.test_client().get(path_, headers=bearer)
            assert answer.status_code in (200, 404), (path_, answer.get_json())
        assert time.monotonic() - started < 2, "a read waited for the writer's lock"
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        app.extensions["sluice.db"].engine.dispose()
