import contextlib

import pytest
import redis

from tests import services
from tests.e2e.harness import APP_SETTINGS, Stack, app_settings, clean_environment
from webapp import create_app
from webapp.auth import create_client
from webapp.extensions import db

pytestmark = pytest.mark.e2e


STRIPE_SECRET = "whsec_e2e_stripe_secret"
META_SECRET = "e2e_meta_app_secret"
SOURCES_TOML = """
[sources.stripe]
scheme = "stripe"
secrets_env = ["E2E_STRIPE_SECRET"]

[sources.whatsapp]
scheme = "meta"
kind = "whatsapp"
secrets_env = ["E2E_META_SECRET"]
verify_token_env = "E2E_META_VERIFY"
"""


def stack_environment(workdir, redis_url: str, database_url: str) -> dict[str, str]:
    (workdir / "sources.toml").write_text(SOURCES_TOML)
    return clean_environment(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        SECRET_KEY="e2e-secret-key",
        DATA_KEYS=services.DATA_KEYS,
        INDEX_KEY=services.INDEX_KEY,
        SLUICE_INSTANCE_PATH=str(workdir / "instance"),
        SLUICE_SOURCES_FILE=str(workdir / "sources.toml"),
        E2E_STRIPE_SECRET=STRIPE_SECRET,
        E2E_META_SECRET=META_SECRET,
        E2E_META_VERIFY="e2e-verify",
        PROMETHEUS_MULTIPROC_DIR=str(workdir / "metrics"),
        PORT=str(services.free_port()),
        WEB_CONCURRENCY="2",
        OUTBOX_RELAY_INTERVAL="1",
        OUTBOX_RELAY_AFTER="1",
        WEBHOOK_MAX_RETRIES="2",
        WEBHOOK_RETRY_BACKOFF="1",
        LOG_LEVEL="INFO",
        # Celery's per-task lines carry each task's arguments: keep them in the
        # stack logs, so the end-of-run leak scan reads them too.
        LOG_TASK_LINES="1",
    )


def fresh_stack_environment(workdir, worker_index: int, name: str) -> dict[str, str]:
    """A stack environment on this xdist worker's flushed Redis db and a new database."""
    redis_url = services.redis_url(2 + 2 * worker_index)
    redis.Redis.from_url(redis_url).flushdb()
    return stack_environment(workdir, redis_url, services.fresh_database(
        f"sluice_{name}_{worker_index}", workdir))


@contextlib.contextmanager
def running_stack(workdir, env: dict[str, str], *names: str):
    """(stack, app): the Procfile's `names` migrated, started and ready, and an app in
    the test process on the same database; both stopped and closed afterwards."""
    stack = Stack(workdir / "logs", env)
    stack.release()
    stack.start(*names)
    app = create_app(app_settings(env))
    try:
        stack.wait_ready()
        yield stack, app
    finally:
        stack.stop()
        app.extensions["sluice.db"].engine.dispose()


def bearer(app, name: str, scopes: list[str]) -> dict[str, str]:
    """Authorization headers for a new API client with `scopes`."""
    with app.app_context():
        _, token = create_client(db.session, name, scopes)
        db.session.commit()
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory, worker_index) -> dict[str, str]:
    return fresh_stack_environment(tmp_path_factory.mktemp("stack"), worker_index, "e2e")


@pytest.fixture(scope="module")
def stack(stack_env, tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("logs"), stack_env)
    stack.release()
    stack.start("web", "worker", "beat")
    try:
        stack.wait_ready()
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def stack_app(stack_env, monkeypatch):
    """An app in the test process configured like the stack, committing for real."""
    monkeypatch.setenv("SLUICE_INSTANCE_PATH", stack_env["SLUICE_INSTANCE_PATH"])
    for name in ("E2E_STRIPE_SECRET", "E2E_META_SECRET"):
        monkeypatch.setenv(name, stack_env[name])
    keys = (*APP_SETTINGS, "SLUICE_SOURCES_FILE")
    app = create_app({key: stack_env[key] for key in keys})
    yield app
    app.extensions["sluice.db"].engine.dispose()


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request, worker_index):
    """(name, settings): the broker a stack uses, REDIS_URL's Redis (no setting) or
    a RabbitMQ vhost of this test's own, so parallel tests never share queues;
    "rabbitmq-quorum" (for a test that asks, with indirect parametrization) declares
    quorum queues there."""
    if request.param == "redis":
        yield request.param, {}
        return
    vhost = services.RabbitVhost(f"sluice_{request.node.originalname}_{worker_index}"[:60])
    quorum = {"CELERY_QUEUE_TYPE": "quorum"} if request.param == "rabbitmq-quorum" else {}
    try:
        yield request.param, {"CELERY_BROKER_URL": vhost.create().url, **quorum}
    finally:
        vhost.delete()
