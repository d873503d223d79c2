import pytest

from webapp import create_app
from webapp.config import ConfigError


def test_environment_overrides_defaults_and_mapping_overrides_environment(
        app_config, monkeypatch):
    monkeypatch.setenv("OUTBOX_RELAY_BATCH", "7")
    monkeypatch.setenv("HEALTH_CHECK_TIMEOUT", "0.25")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    app = create_app({**app_config, "LOG_LEVEL": "DEBUG"})
    assert app.config["OUTBOX_RELAY_BATCH"] == 7
    assert app.config["HEALTH_CHECK_TIMEOUT"] == 0.25
    assert app.config["LOG_LEVEL"] == "DEBUG"
    assert app.config["OUTBOX_RELAY_AFTER"] == 30  # untouched default


def test_a_malformed_environment_value_names_the_variable(app_config, monkeypatch):
    monkeypatch.setenv("OUTBOX_RELAY_BATCH", "lots")
    with pytest.raises(ConfigError, match="OUTBOX_RELAY_BATCH must be a int"):
        create_app(app_config)


def test_plain_postgres_urls_use_psycopg3(app_config):
    app = create_app({**app_config, "DATABASE_URL": "postgres://u:p%40ss@db.example:5432/x"})
    assert app.config["DATABASE_URL"] == "postgresql+psycopg://u:p%40ss@db.example:5432/x"


def test_without_database_url_the_embedded_sqlite_file_lives_in_the_instance_folder(
        app_config, tmp_path, monkeypatch):
    monkeypatch.setenv("SLUICE_INSTANCE_PATH", str(tmp_path / "inst"))
    config = {k: v for k, v in app_config.items() if k not in {"DATABASE_URL", "SECRET_KEY"}}
    app = create_app(config)
    assert app.config["DATABASE_URL"] == f"sqlite:///{tmp_path / 'inst' / 'sluice.db'}"
    secret = (tmp_path / "inst" / "secret_key").read_text()
    assert app.config["SECRET_KEY"] == secret and len(secret) >= 48
    assert (tmp_path / "inst" / "secret_key").stat().st_mode & 0o077 == 0
    assert create_app(config).config["SECRET_KEY"] == secret  # stable across restarts


@pytest.mark.parametrize("overrides, message", [
    ({"CELERY_VISIBILITY_TIMEOUT": 700, "CELERY_TASK_TIME_LIMIT": 800},
     "CELERY_VISIBILITY_TIMEOUT must exceed"),
    ({"CLAMD_URL": "clamd.local:3310"}, "CLAMD_URL must be"),
    ({"WEBHOOK_RETRY_BACKOFF_MAX": 8000}, "WEBHOOK_RETRY_BACKOFF_MAX must stay below"),
    ({"DATABASE_URL": "mysql://x/y"}, "PostgreSQL or SQLite"),
    ({"TRUSTED_PROXY_COUNT": -1}, "TRUSTED_PROXY_COUNT"),
    ({"CELERY_QUEUE_TYPE": "stream"}, "CELERY_QUEUE_TYPE is classic or quorum"),
    ({"EVENT_PARTITION_SPAN": "week"}, "EVENT_PARTITION_SPAN is month or day"),
    ({"CELERY_QUEUE_TYPE": "quorum"}, "needs a RabbitMQ CELERY_BROKER_URL"),
])
def test_unusable_settings_stop_the_app_from_starting(app_config, overrides, message):
    with pytest.raises(ConfigError, match=message):
        create_app({**app_config, **overrides})
