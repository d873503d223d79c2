"""The Redis broker transport that reuses its client (tasks/broker.py)."""
import json
import ssl

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.common import ignore_errors
from kombu.exceptions import OperationalError

from tasks import broker
from tests.helpers.workers import celery_of
from tests.services import ThrowawayRedis, TlsRedis
from webapp import create_app


def test_a_redis_broker_publishes_through_one_client_per_pool(app, redis_db):
    celery = celery_of(app)
    with celery.connection_for_write() as connection:
        assert isinstance(connection.transport, broker.Transport)
        channel = connection.default_channel
        first = channel._create_client()
        assert channel._create_client() is first

        celery.send_task("sluice.ping", queue="cron", connection=connection)
        # As in a forked child: kombu drops the parent's pool; a new client comes
        # with the new pool, so no socket is shared with the parent.
        channel._after_fork()
        second = channel._create_client()
        assert second is not first and second.connection_pool is channel.pool
        assert second.connection_pool is not first.connection_pool
        celery.send_task("sluice.ping", queue="cron", connection=connection)

    queued = [json.loads(m)["headers"]["task"] for m in redis_db.lrange("cron", 0, -1)]
    assert queued == ["sluice.ping", "sluice.ping"]


@pytest.mark.parametrize("url, transport", [
    ("amqp://guest:guest@127.0.0.1:5672//", "amqp"),
    ("unix:///tmp/x/redis.sock", "redis"),  # spelled redis+socket:// for kombu
])
def test_other_broker_urls_keep_kombus_own_transport(app_config, url, transport):
    app = create_app({**app_config, "CELERY_BROKER_URL": url})
    celery = celery_of(app)
    assert celery.conf.broker_transport is None
    assert celery.connection_for_write().transport_cls == transport
    assert not celery.connection_for_write().ssl


@pytest.mark.parametrize("query, verify", [
    ("", ssl.CERT_REQUIRED),  # kombu's own transport would not verify at all
    ("?ssl_cert_reqs=none", ssl.CERT_NONE),  # said in the URL: the URL wins
])
def test_a_rediss_broker_uses_our_transport_and_verifies_unless_told_not_to(
        app_config, query, verify):
    app = create_app({**app_config, "CELERY_BROKER_URL": f"rediss://127.0.0.1:6380/0{query}"})
    connection = celery_of(app).connection_for_write()
    assert connection.transport_cls == broker.TRANSPORT
    assert connection.ssl["ssl_cert_reqs"] == verify


def test_tasks_reach_a_tls_broker_through_the_apps_config(app_config, tmp_path):
    tls_redis = TlsRedis(tmp_path / "tls-redis").start()
    try:
        app = create_app({**app_config, "CELERY_BROKER_URL": tls_redis.url})
        celery_of(app).send_task("sluice.ping", queue="cron")
        queued = redis.Redis.from_url(tls_redis.url).lrange("cron", 0, -1)
        assert [json.loads(m)["headers"]["task"] for m in queued] == ["sluice.ping"]
        # Verified by default: without the test CA in the URL its certificate is
        # refused (kombu's own transport would have taken any certificate).
        untrusted = tls_redis.url.split("?")[0]
        app = create_app({**app_config, "CELERY_BROKER_URL": untrusted})
        with pytest.raises(OperationalError, match="certificate verify failed"):
            with celery_of(app).connection_for_write() as connection:
                connection.ensure_connection(max_retries=1)
    finally:
        tls_redis.stop()


@pytest.mark.parametrize("server", [ThrowawayRedis, TlsRedis])
def test_a_lost_broker_is_torn_down_as_a_connection_error_not_a_crash(tmp_path, server):
    """What Celery 5.7's consumer does when Redis goes away mid-task.

    It calls collect(), then close() under ignore_errors, which swallows only
    connection and channel errors: anything else exits the worker. Before the fix
    close() raised AttributeError ('NoneType' object has no attribute 'hostname')
    and the worker exited instead of reconnecting.
    """
    redis_server = server(tmp_path / "redis").start()
    connection = Connection(redis_server.url, transport=broker.TRANSPORT,
                            ssl=broker.broker_ssl(redis_server.url))
    try:
        tasks = connection.default_channel
        queue = Queue("work", Exchange("work", type="direct"), routing_key="work")
        Producer(tasks).publish({"n": 1}, exchange=queue.exchange, routing_key="work",
                                declare=[queue])
        running = []  # received, not acked: a late-acked task still in progress
        Consumer(tasks, [queue], callbacks=[lambda body, message: running.append(body)]
                 ).consume()
        connection.drain_events(timeout=5)
        assert running == [{"n": 1}]
        # Like Celery's gossip: a second channel consuming an auto-delete fanout
        # queue, which its close deletes, so collect() stops there.
        gossip = connection.channel()
        Consumer(gossip, [Queue("gossip.one", Exchange("gossip", type="fanout"),
                                auto_delete=True)]).consume()
        gossip.client  # noqa: B018 - cached by its first use, as in the worker
        tasks._brpop_start()  # the worker waits in BRPOP when the broker dies

        redis_server.stop()
        connection.collect(socket_timeout=5)
        ignore_errors(connection, connection.close)  # raised AttributeError before the fix
        assert tasks.closed  # torn down, so the worker goes on to reconnect
    finally:
        redis_server.stop()
