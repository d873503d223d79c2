"""What an app keeps in `app.extensions`, and how to reach it: one key and one accessor
for each, imported by the web and the workers alike (loading this loads no Celery).

Each accessor takes the app, or uses the current one: task code runs in an app
context; the worker's own threads (the relay, the queue gauge) hold their app.
"""
from __future__ import annotations

import os
from typing import Any

import redis
from flask import Flask, current_app
from sqlalchemy.orm import Session

from documents.storage import BlobStorage, from_config

DB_KEY = "sluice.db"            # webapp.extensions.DatabaseState: engine, sessions
REDIS_KEY = "sluice.redis"      # redis.Redis
SOURCES_KEY = "sluice.sources"  # {name: webhooks.sources.Source}, loaded with the app
STORAGE_KEY = "sluice.storage"  # (pid, BlobStorage), built on first use in a process
CONFIRMERS_KEY = "sluice.confirmers"  # (pid, {provider: ProviderStatusClient}), the same


def _app(app: Flask | None) -> Flask:
    return app if app is not None else current_app


def database(app: Flask | None = None):
    """The app's DatabaseState (engine, session factory, this context's session)."""
    return _app(app).extensions[DB_KEY]


def db_session(app: Flask | None = None) -> Session:
    """The current app context's session (closed when the context ends)."""
    return database(app).session


def redis_client(app: Flask | None = None) -> redis.Redis:
    return _app(app).extensions[REDIS_KEY]


def sources(app: Flask | None = None) -> dict:
    """The configured webhook sources by name."""
    return _app(app).extensions[SOURCES_KEY]


def storage(app: Flask | None = None) -> BlobStorage:
    """The app's blob storage, built on first use in this process (after any fork: a
    boto3 client must not be shared with a parent)."""
    flask_app = _app(app)
    state = flask_app.extensions.get(STORAGE_KEY)
    if state is None or state[0] != os.getpid():
        state = (os.getpid(), from_config(flask_app.config))
        flask_app.extensions[STORAGE_KEY] = state
    return state[1]


def payment_status_clients(app: Flask | None = None) -> dict:
    """The payment providers' status API clients (those with credentials configured),
    built on first use in this process: a requests session must not cross a fork."""
    from payments.status_api import status_clients  # workers only: it loads requests

    flask_app = _app(app)
    state = flask_app.extensions.get(CONFIRMERS_KEY)
    if state is None or state[0] != os.getpid():
        state = (os.getpid(), status_clients(flask_app.config, redis_client(flask_app)))
        flask_app.extensions[CONFIRMERS_KEY] = state
    return state[1]


def config(key: str) -> Any:
    return current_app.config[key]
