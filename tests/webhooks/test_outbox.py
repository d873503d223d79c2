"""The outbox: a committed row is published once, by a relay (never at commit, never
for rolled-back work), and what a broker outage left behind is delivered once."""
import datetime as dt
import time

import pytest
from sqlalchemy import select, update

from store.db import utcnow
from store.outbox import OutboxMessage, enqueue
from store.publishing import publish_pending
from tasks.celery_app import outbox_publisher
from tests.helpers.outbox import queued, relay
from tests.helpers.workers import celery_of
from tests.services import ThrowawayRedis, free_port
from webapp.extensions import db


@pytest.fixture
def app(worker_app):
    """As a worker builds it: tasks' sessions enqueue, and the relay publishes."""
    return worker_app


def rows(session) -> list[OutboxMessage]:
    return session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()


def enqueue_by_orm(session, *args, **kwargs) -> int:
    row = enqueue(session, *args, **kwargs)
    session.flush()
    return row.id


def test_a_committed_row_is_published_once_by_the_relay_and_marked(app, redis_db):
    # A worker's task commits, and its relay publishes: one message, however often
    # the relay runs (it also used to be published at commit, and so went out twice).
    add = enqueue_by_orm
    declare_worker_queues(celery_of(app))
    with app.app_context():
        message_id = add(db.session, "sluice.ping", {"token": "t1"}, queue="cron")
        db.session.commit()
        assert queued(redis_db, "cron") == []  # nothing at commit
        assert (relay(app), relay(app)) == (1, 0)
        assert queued(redis_db, "cron") == [
            {"task": "sluice.ping", "outbox_id": message_id, "kwargs": {"token": "t1"}}]
        for other in ("webhooks", "documents", "imports"):
            assert queued(redis_db, other) == [], f"message copied into {other}"
        db.session.expire_all()
        assert rows(db.session)[0].published_at is not None


def declare_worker_queues(celery) -> None:
    """Bind every queue as a worker consuming all four does on start."""
    with celery.connection_for_write() as connection:
        for queue in celery.amqp.queues.values():
            queue(connection.default_channel).declare()


def test_routing_by_task_name_when_no_queue_is_given(app, redis_db):
    declare_worker_queues(celery_of(app))
    with app.app_context():
        for name in ("sluice.webhooks.process", "sluice.documents.scan",
                     "sluice.imports.run", "sluice.cron.relay_outbox"):
            enqueue(db.session, name, {})
        db.session.commit()
    relay(app)
    for queue in ("webhooks", "documents", "imports", "cron"):
        assert [m["task"] for m in queued(redis_db, queue)] == [f"sluice.{queue}." + {
            "webhooks": "process", "documents": "scan", "imports": "run",
            "cron": "relay_outbox"}[queue]]


def test_rollback_publishes_nothing_and_stores_nothing(app, redis_db):
    add = enqueue_by_orm
    with app.app_context():
        add(db.session, "sluice.ping", {"token": "gone"}, queue="cron")
        db.session.rollback()
        db.session.commit()
        assert rows(db.session) == []
    assert relay(app) == 0
    assert redis_db.llen("cron") == 0


def test_a_rolled_back_savepoint_does_not_publish_its_messages(app, redis_db):
    add = enqueue_by_orm
    with app.app_context():
        session = db.session
        add(session, "sluice.ping", {"token": "before"}, queue="cron")
        with pytest.raises(RuntimeError):
            with session.begin_nested():
                add(session, "sluice.ping", {"token": "discarded"}, queue="cron")
                raise RuntimeError("duplicate, say")
        add(session, "sluice.ping", {"token": "kept"}, queue="cron")
        session.commit()
        assert [r.kwargs for r in rows(session)] == [{"token": "before"}, {"token": "kept"}]
    relay(app)
    assert [m["kwargs"] for m in queued(redis_db, "cron")] == [{"token": "before"},
                                                               {"token": "kept"}]


def test_broker_down_at_publish_leaves_the_row_for_the_relay_which_delivers_it_once(
        make_app, tmp_path):
    broker = ThrowawayRedis(tmp_path / "broker", port=free_port())
    app = make_app(CELERY_BROKER_URL=broker.url)
    with app.app_context():
        session = db.session
        started = time.monotonic()
        enqueue(session, "sluice.ping", {"token": "survivor"}, queue="cron")
        session.commit()  # the broker is not even running
        assert time.monotonic() - started < 2, "a broker outage must not hold up the commit"
        [row] = rows(session)
        assert row.published_at is None

        publisher = outbox_publisher(celery_of(app))
        down = publish_pending(session, publisher, older_than=dt.timedelta(0))
        assert (down.published, down.failed) == (0, 1)
        session.refresh(row)
        assert row.attempts == 1 and "OperationalError" in row.last_error

        broker.start()
        try:
            up = publish_pending(session, publisher, older_than=dt.timedelta(0))
            again = publish_pending(session, publisher, older_than=dt.timedelta(0))
            client = __import__("redis").Redis.from_url(broker.url)
            delivered = queued(client, "cron")
        finally:
            broker.stop()
        assert (up.published, again.published) == (1, 0)
        assert delivered == [{"task": "sluice.ping", "outbox_id": row.id,
                              "kwargs": {"token": "survivor"}}]
        session.refresh(row)
        assert row.published_at is not None


def test_relay_leaves_fresh_rows_to_their_own_publish_and_goes_oldest_first(app, redis_db):
    with app.app_context():
        session = db.session
        for token in ("old-1", "old-2", "fresh"):
            enqueue(session, "sluice.ping", {"token": token}, queue="cron")
        session.commit()
        old = utcnow() - dt.timedelta(minutes=5)
        session.execute(update(OutboxMessage).where(
            OutboxMessage.kwargs["token"].as_string().in_(["old-1", "old-2"]))
            .values(created_at=old))
        session.commit()
        publisher = outbox_publisher(celery_of(app))
        result = publish_pending(session, publisher, older_than=dt.timedelta(seconds=30),
                                 batch_size=10)
        assert (result.published, result.failed) == (2, 0)
    assert [m["kwargs"]["token"] for m in queued(redis_db, "cron")] == ["old-1", "old-2"]
