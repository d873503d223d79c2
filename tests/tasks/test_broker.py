"""The Redis broker transport that reuses its client (tasks/broker.py)."""
import json

import pytest

from tasks import broker
from webapp import create_app


def test_a_redis_broker_publishes_through_one_client_per_pool(app, redis_db):
    celery = app.extensions["celery"]
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
    ("rediss://127.0.0.1:6380/0", "rediss"),
    ("unix:///tmp/x/redis.sock", "redis"),  # spelled redis+socket:// for kombu
])
def test_other_broker_urls_keep_kombus_own_transport(app_config, url, transport):
    app = create_app({**app_config, "CELERY_BROKER_URL": url})
    celery = app.extensions["celery"]
    assert celery.conf.broker_transport is None
    assert celery.connection_for_write().transport_cls == transport
