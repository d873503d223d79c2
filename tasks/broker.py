"""kombu's Redis transport, with one reused client per channel, that survives a lost broker.

kombu 5.7's Redis channel builds a new `redis.Redis` for every command it sends
outside the event loop (`conn_or_acquire`): each publish, and the MULTI that
records and then clears every unacked message. redis-py 8 copies its
response-callback tables for every client it builds, which showed up as a large
share of the worker's main process in the drain profile. The client
only wraps the channel's connection pool and is thread-safe, so one per pool does.

Used for `redis://` and `rediss://` brokers (see `transport_for`). kombu takes a
`redis+socket://` URL's transport from the URL itself, so that and non-Redis
schemes keep kombu's own transport. kombu turns TLS on for `rediss://` by the
transport's name, so with ours `broker_ssl` says it instead.

It also turns one teardown crash into the connection error it is (see
`Channel._connparams`).
"""
from __future__ import annotations

import ssl

import redis
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

    def _connparams(self, asynchronous=False):
        # When the broker goes away, Celery 5.7's consumer tears the connection down
        # twice: Connection.collect(), then Connection.close(). collect() closes the
        # channels until one fails (a fanout consumer such as gossip deletes its
        # queue on close, which needs Redis), then detaches the transport, so close()
        # meets a channel still open after its connection is gone. Closing it
        # restores its unacked messages, which asks for a new pool, and kombu reads
        # the host from the detached connection: AttributeError. Nothing treats that
        # as a connection error, so the worker exited ("Unrecoverable error") instead
        # of reconnecting. Say what it is: Celery and kombu swallow a connection
        # error here and the worker reconnects. The unacked messages stay in Redis's
        # unacked set, and kombu restores them after the visibility timeout.
        if self.connection.client is None:
            raise redis.ConnectionError("the broker connection is already closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel


def transport_for(url: str) -> str | None:
    """The transport Celery should use for broker `url` (None: the URL scheme's own)."""
    return TRANSPORT if url.startswith(("redis://", "rediss://")) else None


def broker_ssl(url: str) -> dict | bool:
    """Celery's `broker_use_ssl` for `url`: for `rediss://`, certificates verified
    unless the URL says otherwise; else False, Celery's default.

    kombu's own transport gives a `rediss://` URL without `ssl_*` options no
    verification at all (with a warning). redis-py, which Sluice's other Redis
    clients use, verifies by default; so does the broker. The URL's `ssl_*` options
    (`ssl_ca_certs=...`, `ssl_cert_reqs=none`) replace these.
    """
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED} if url.startswith("rediss://") else False
