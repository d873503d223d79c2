"""kombu's Redis transport, with one reused client per channel.

kombu 5.7's Redis channel builds a new `redis.Redis` for every command it sends
outside the event loop (`conn_or_acquire`): each publish, and the MULTI that
records and then clears every unacked message. redis-py 8 spends about 60 us
building a client (its response-callback tables are copied each time), which came
to about a tenth of the worker's main process in the drain profile. The client
only wraps the channel's connection pool and is thread-safe, so one per pool does.

Used for plain `redis://` brokers only (see `transport_for`). kombu picks its SSL
defaults by the transport's name being "rediss", and takes a `redis+socket://`
URL's transport from the URL itself, so those and non-Redis schemes keep kombu's
own transport.
"""
from __future__ import annotations

from kombu.transport import redis as kombu_redis

TRANSPORT = "tasks.broker:Transport"


class Channel(kombu_redis.Channel):
    _sync_client = None

    def _create_client(self, asynchronous=False):
        if asynchronous:  # built once per channel by kombu already
            return super()._create_client(asynchronous=True)
        client = self._sync_client
        # After a fork kombu drops the pool and builds a new one on next use: a
        # client still holding the old pool would share its sockets with the parent.
        if client is None or client.connection_pool is not self.pool:
            client = self._sync_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel


def transport_for(url: str) -> str | None:
    """The transport Celery should use for broker `url` (None: the URL scheme's own)."""
    return TRANSPORT if url.startswith("redis://") else None
