"""The Flask application factory."""
from __future__ import annotations

import os
from typing import Any, Mapping

from flask import Flask, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from store.db import reads_done, reads_only
from webapp import config as settings


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then the environment, then `config`."""
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if metrics_dir:  # metrics without labels write their file as soon as they are defined
        os.makedirs(metrics_dir, exist_ok=True)
    app = Flask(__name__, static_folder=None, instance_path=instance_path())
    app.config.update(settings.settings(os.environ, app.instance_path, config))
    settings.install_data_keys(app.config)  # the sealed columns' keys (store/sealing.py)

    from webapp.logging import configure_logging

    configure_logging(app)
    register_extensions(app)
    from webapp.keys_cli import refuse_dropped_keys

    refuse_dropped_keys(app)  # a dropped data key must not leave values unreadable
    from webapp.telemetry import init_tracing

    init_tracing(app)  # nothing at all unless an OTEL_* variable asks for traces
    register_blueprints(app)
    register_errorhandlers(app)
    register_request_hooks(app)
    register_commands(app)
    if app.config["TRUSTED_PROXY_COUNT"]:
        hops = app.config["TRUSTED_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    return app


def instance_path() -> str:
    """SLUICE_INSTANCE_PATH, else Flask's default instance folder for this package."""
    configured = os.environ.get("SLUICE_INSTANCE_PATH")
    if configured:
        return os.path.abspath(configured)
    return Flask(__name__, static_folder=None).instance_path


def register_extensions(app: Flask) -> None:
    """No Celery here: the web leaves its outbox rows to the workers' relay
    (tasks/relay.py); worker and beat add Celery in `tasks.worker`."""
    from webapp.embedded import ensure_embedded_redis
    from webapp.extensions import db, init_redis, limiter
    from webapp.rate_limits import init_rate_limits

    if not app.config.get("REDIS_URL"):
        app.config["REDIS_URL"] = ensure_embedded_redis(app.instance_path)
    db.init_app(app)
    init_redis(app)
    init_rate_limits(app, limiter)


def register_blueprints(app: Flask) -> None:
    from webapp import (
        admin,
        destination_views,
        direct_upload_views,
        document_views,
        erasure_views,
        health,
        hold_views,
        import_views,
        metrics,
        outcome_views,
    )
    from webapp.contract import init_contract
    from webapp.ops import init_ops
    from webapp.uploads import init_uploads
    from webapp.webhook_views import init_webhooks

    init_contract(app)  # first: the other blueprints' routes use its id converter
    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(destination_views.bp)
    app.register_blueprint(hold_views.bp)
    app.register_blueprint(erasure_views.bp)
    init_uploads(app)
    app.register_blueprint(document_views.bp)
    app.register_blueprint(import_views.bp)
    app.register_blueprint(direct_upload_views.bp)
    app.register_blueprint(outcome_views.bp)
    init_webhooks(app)
    init_ops(app)


def register_errorhandlers(app: Flask) -> None:
    from webapp.errors import register_errorhandlers as register

    register(app)


READS_ONLY_TOKEN = "sluice.reads_only"


def writes_from_here() -> None:
    """A GET that must record something after all (a download finding its bytes gone):
    its next transaction may write, taking the write lock as any write does."""
    token = request.environ.pop(READS_ONLY_TOKEN, None)
    if token is not None:
        reads_done(token)


def register_request_hooks(app: Flask) -> None:
    from webapp.logging import REQUEST_ID_HEADER, incoming_request_id
    from webapp.metrics import register_metrics

    @app.before_request
    def assign_request_id() -> None:
        g.request_id = incoming_request_id()

    # GET and HEAD only read: on SQLite their transactions then take no write lock, so
    # a page or a progress poll never waits behind a writer (store/db.py).
    @app.before_request
    def safe_methods_only_read() -> None:
        if request.method in ("GET", "HEAD"):
            request.environ[READS_ONLY_TOKEN] = reads_only()

    @app.teardown_request
    def end_reads_only(_exc) -> None:
        token = request.environ.pop(READS_ONLY_TOKEN, None)
        if token is not None:
            reads_done(token)

    @app.after_request
    def echo_request_id(response):
        if "request_id" in g:
            response.headers[REQUEST_ID_HEADER] = g.request_id
        return response

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        # API answers carry tokens, ids and personal data: no cache keeps them.
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    register_metrics(app)


def register_commands(app: Flask) -> None:
    from webapp.cli import register_commands as register

    register(app)
