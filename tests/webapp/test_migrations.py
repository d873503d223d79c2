"""upgrade -> downgrade -> upgrade on both backends, models == migrations, and the
heads /startupz reads without Alembic == Alembic's own."""
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from documents.text import index
from store.db import make_engine
from tests import services
from webapp.config import normalize_database_url
from webapp.migrate import (
    _constants,
    alembic_config,
    database_heads,
    downgrade,
    script_heads,
    upgrade,
)
from webapp.models import metadata


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request, tmp_path, worker_index):
    if request.param == "sqlite":
        return services.fresh_sqlite_database("migrations", tmp_path)
    base = services.require_postgres()
    return services.fresh_postgres_database(base, f"sluice_migrations_{worker_index}")


def read(url: str, query):
    engine = make_engine(normalize_database_url(url))
    try:
        with engine.connect() as connection:
            return set(query(connection))
    finally:
        engine.dispose()


# what the search index adds that SQLAlchemy's metadata cannot describe: SQLite's FTS5
# table (and the tables FTS5 keeps it in), PostgreSQL's tsvector column
OUTSIDE_METADATA = {index.FTS_TABLE, *index.FTS_SHADOW}


def is_month(name: str) -> bool:
    """A partition of webhook_events (migration 0028): the table describes them all."""
    return name.startswith("webhook_events_")


def tables(url: str) -> set[str]:
    return {name for name in read(url, lambda connection: inspect(connection).get_table_names())
            if not is_month(name)} - OUTSIDE_METADATA


def described_by_metadata(item, name, type_, reflected, compare_to) -> bool:
    if type_ == "table":
        return name not in OUTSIDE_METADATA and not is_month(name)
    if type_ == "column":
        return not (item.table.name == "document_texts" and name == index.SEARCH_COLUMN)
    return not (type_ == "index" and name == "ix_document_texts_search")


def alembic_heads(url: str) -> set[str]:
    return read(url, lambda connection: MigrationContext.configure(connection)
                .get_current_heads())


def our_heads(url: str) -> set[str]:
    return read(url, database_heads)


def test_upgrade_downgrade_upgrade(empty_database_url):
    assert our_heads(empty_database_url) == alembic_heads(empty_database_url) == set()
    upgrade(empty_database_url, "0002")
    assert our_heads(empty_database_url) == alembic_heads(empty_database_url) == {"0002"}
    upgrade(empty_database_url)
    expected = set(metadata.tables) | {"alembic_version"}
    assert tables(empty_database_url) == expected
    downgrade(empty_database_url, "base")
    assert tables(empty_database_url) == {"alembic_version"}
    assert our_heads(empty_database_url) == alembic_heads(empty_database_url) == set()
    upgrade(empty_database_url)
    assert tables(empty_database_url) == expected
    engine = make_engine(normalize_database_url(empty_database_url))
    try:
        with engine.connect() as connection:
            assert set(MigrationContext.configure(connection).get_current_heads()) \
                == database_heads(connection) == script_heads()
            diff = compare_metadata(MigrationContext.configure(
                connection, opts={"compare_type": True,
                                  "include_object": described_by_metadata}), metadata)
    finally:
        engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"


def test_script_heads_match_alembics_reading_of_the_migrations():
    assert script_heads() == set(ScriptDirectory.from_config(alembic_config("")).get_heads())


def test_script_heads_follow_merges_and_annotated_assignments(tmp_path, monkeypatch):
    # Alembic's newer templates annotate (`revision: str = ...`); a merge names two parents.
    versions = tmp_path / "versions"
    versions.mkdir()
    for name, text in {
        "a.py": 'revision = "a"\ndown_revision = None\n',
        "b.py": 'revision: str = "b"\ndown_revision: str | None = "a"\n',
        "c.py": 'revision = "c"\ndown_revision = "a"\n',
        "m.py": 'revision = "m"\ndown_revision = ("b", "c")\n',
        "d.py": 'revision = "d"\ndown_revision = "a"\n',
    }.items():
        (versions / name).write_text(text)
    monkeypatch.setattr("webapp.migrate.MIGRATIONS_DIR", tmp_path)
    script_heads.cache_clear()
    try:
        assert script_heads() == {"m", "d"}
    finally:
        script_heads.cache_clear()
    assert _constants(versions / "b.py", {"revision"}) == {"revision": "b"}


def test_0011_gives_existing_documents_their_manifests_metadata(empty_database_url):
    from sqlalchemy import text

    upgrade(empty_database_url, "0010")
    engine = make_engine(normalize_database_url(empty_database_url))
    try:
        with engine.begin() as connection:
            for document_id in (1, 2):
                connection.execute(text(
                    "INSERT INTO documents (id, owner_id, sha256, size, mime_type, filename, "
                    "status, scan_attempts, created_at) VALUES (:id, 1, :sha, 1, 'text/plain', "
                    "'f.txt', 'clean', 1, CURRENT_TIMESTAMP)"),
                    {"id": document_id, "sha": str(document_id) * 64})
            for row_no, (document_id, title, ref, tags) in enumerate([
                    (1, "Invoice", "INV-1", '["bank", "2026"]'), (1, "later", None, '["bank"]'),
                    (2, None, None, None)], 1):
                connection.execute(text(
                    "INSERT INTO import_rows (import_id, row_no, outcome, document_id, title, "
                    "external_ref, tags) VALUES (1, :row_no, 'ok', :document_id, :title, "
                    ":ref, :tags)"), {"row_no": row_no, "document_id": document_id,
                                      "title": title, "ref": ref, "tags": tags})
        upgrade(empty_database_url)
        with engine.connect() as connection:
            documents = connection.execute(text(
                "SELECT id, title, external_ref FROM documents ORDER BY id")).all()
            tags = connection.execute(text(
                "SELECT document_id, tag FROM document_tags ORDER BY document_id, tag")).all()
    finally:
        engine.dispose()
    assert [tuple(d) for d in documents] == [(1, "Invoice", "INV-1"), (2, None, None)]
    assert [tuple(t) for t in tags] == [(1, "2026"), (1, "bank")]


def test_0028_claims_every_key_and_partition_events_keeps_every_event(empty_database_url):
    """A populated table: 0028 claims the keys of its events, and of those a process of
    the release before inserts without claiming; on PostgreSQL `flask db
    partition-events` then attaches it whole as the first month. A repeat is a
    duplicate throughout, a new key is stored after the old ids, and 0027 comes back."""
    import datetime as dt

    from click.testing import CliRunner
    from sqlalchemy import text

    from webapp.migrate import db_cli
    from webhooks.ingest import store_event

    upgrade(empty_database_url, "0027")
    engine = make_engine(normalize_database_url(empty_database_url))
    postgres = engine.dialect.name == "postgresql"
    now = dt.datetime.now(dt.timezone.utc)
    old_insert = text(  # what the release before 0028 runs
        "INSERT INTO webhook_events (source, event_key, kind, provider, received_at, "
        "headers, status, attempts) VALUES ('stripe', :key, 'payment', 'stripe', :at, '{}', "
        "'processed', 1) ON CONFLICT (source, event_key) DO NOTHING")
    values = dict(source="stripe", kind="payment", provider="stripe", event_type=None,
                  trust="signed", body=None, received_at=now, enqueued_at=now, headers={},
                  status="received", attempts=0)

    def keys_and_events():
        with engine.connect() as connection:
            return connection.execute(text(
                "SELECT (SELECT count(*) FROM webhook_event_keys), (SELECT count(*) FROM "
                "webhook_event_keys k JOIN webhook_events e ON e.id = k.event_id AND "
                "e.event_key = k.event_key), (SELECT count(*) FROM webhook_events)")).one()

    try:
        with engine.begin() as connection:
            connection.execute(old_insert, [{"key": f"evt_{n}", "at": now - dt.timedelta(
                days=n % 60)} for n in range(250)])
        upgrade(empty_database_url)
        assert tuple(keys_and_events()) == (250, 250, 250)
        if postgres:  # a process not yet replaced still inserts
            with engine.begin() as connection:
                connection.execute(old_insert, {"key": "evt_old_code", "at": now})
        repeat = store_event(engine, {**values, "event_key": "evt_7"})
        new = store_event(engine, {**values, "event_key": "evt_new"})
        assert repeat.duplicate and repeat.event_id == 8
        assert not new.duplicate and new.event_id > 250
        stored = 252 if postgres else 251
        assert tuple(keys_and_events()) == (stored, stored, stored)
        if not postgres:
            return
        partition = CliRunner().invoke(db_cli, ["partition-events"], env={
            "MIGRATION_DATABASE_URL": empty_database_url})
        assert partition.exit_code == 0, partition.output
        assert "webhook_events is partitioned: its rows until" in partition.output
        with engine.connect() as connection:
            kind = connection.scalar(text(
                "SELECT relkind FROM pg_class WHERE relname = 'webhook_events'"))
            first = connection.scalars(text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'webhook_events'::regclass "
                "AND c.relname LIKE 'webhook_events_until_%'")).all()
            in_first = [connection.scalar(text(f"SELECT count(*) FROM {name}"))
                        for name in first]
        assert kind == "p" and in_first == [stored]  # the old table, attached whole
        assert store_event(engine, {**values, "event_key": "evt_old_code"}).duplicate
        assert not store_event(engine, {**values, "event_key": "evt_after"}).duplicate
        again = CliRunner().invoke(db_cli, ["partition-events"], env={
            "MIGRATION_DATABASE_URL": empty_database_url})
        assert "partitioned already" in again.output
        downgrade(empty_database_url, "0027")
        with engine.connect() as connection:
            back = connection.execute(text(
                "SELECT (SELECT relkind FROM pg_class WHERE relname = 'webhook_events'), "
                "count(*) FROM webhook_events")).one()
        assert tuple(back) == ("r", stored + 1)
    finally:
        engine.dispose()
