"""Test apps as worker and beat processes build them: with a Celery app.

The web's `create_app` has none (tasks.celery_app); a test that runs or sends a
task gives its app one the way `tasks.worker` does.
"""
from __future__ import annotations

from celery import Celery
from flask import Flask

from tasks.celery_app import celery_init_app


def celery_of(app: Flask) -> Celery:
    """`app`'s Celery app, built once."""
    return app.extensions.get("celery") or celery_init_app(app)


def as_worker(app: Flask) -> Flask:
    """`app` with its Celery app, as the worker runs it."""
    celery_of(app)
    return app
