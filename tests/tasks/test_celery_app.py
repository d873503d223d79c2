import os
import subprocess
import sys

import pytest

from store import task_names
from tests.helpers.workers import celery_of
from webapp import create_app


def test_worker_settings_guard_against_lost_and_duplicated_work(app):
    conf = celery_of(app).conf
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    assert {q.name for q in conf.task_queues} == {"webhooks", "documents", "imports", "cron",
                                                  "deliveries", "enrich"}


def test_every_task_module_registers_its_named_tasks(app):
    celery = celery_of(app)
    celery.loader.import_default_modules()
    names = {value for name, value in vars(task_names).items()
             if name.isupper() and isinstance(value, str) and value.startswith("sluice.")}
    assert len(names) >= 7 and names <= set(celery.tasks)
    for name in names:  # every task, not a sample: acked after it ran, no result kept
        task = celery.tasks[name]
        assert task.acks_late and task.ignore_result, name


def test_beat_relays_the_outbox_at_the_configured_interval(app_config):
    app = create_app({**app_config, "OUTBOX_RELAY_INTERVAL": 4})
    schedule = celery_of(app).conf.beat_schedule
    entry = schedule["relay-outbox"]
    assert entry["task"] == "sluice.cron.run_job"
    assert entry["kwargs"] == {"name": "relay_outbox", "trigger": "beat"}
    assert entry["schedule"].total_seconds() == 4
    assert entry["options"]["expires"] == 3
    assert entry["options"]["soft_time_limit"] < entry["options"]["time_limit"]
    assert schedule["redrive-stuck-work"]["schedule"].total_seconds() == 60


def test_crontab_schedules_replace_intervals(app_config):
    from celery.schedules import crontab

    app = create_app({**app_config, "CRON_SCHEDULES": "purge_retention=30 3 * * *"})
    entry = celery_of(app).conf.beat_schedule["purge-retention"]
    assert entry["schedule"] == crontab(minute="30", hour="3")
    assert entry["options"]["expires"] == 300


@pytest.mark.parametrize("spec, message", [
    ("nope=* * * * *", "unknown job"), ("purge_retention=* * *", "five crontab fields"),
    ("purge_retention=99 * * * *", "CRON_SCHEDULES[purge_retention]"),
])
def test_bad_crontabs_stop_worker_and_beat_from_starting(redis_url, tmp_path, spec, message):
    environ = {"PATH": os.environ["PATH"], "SLUICE_INSTANCE_PATH": str(tmp_path),
               "REDIS_URL": redis_url, "CRON_SCHEDULES": spec}
    started = subprocess.run([sys.executable, "-c", "import tasks.worker"], env=environ,
                             capture_output=True, text=True, timeout=60)
    assert started.returncode == 1
    assert started.stderr.startswith("sluice: configuration error: ")
    assert message in started.stderr and "Traceback" not in started.stderr


def test_disabled_jobs_are_not_scheduled(app_config):
    app = create_app({**app_config,
                      "CRON_DISABLED": "redrive_stuck_work, reconcile_payments"})
    schedule = set(celery_of(app).conf.beat_schedule)
    assert {"relay-outbox", "purge-retention"} <= schedule
    assert not {"redrive-stuck-work", "reconcile-payments"} & schedule


def test_embedded_unix_socket_urls_are_spelled_for_kombu(app_config):
    app = create_app({**app_config, "REDIS_URL": "unix:///tmp/x/redis.sock"})
    assert celery_of(app).conf.broker_url == "redis+socket:///tmp/x/redis.sock"
    assert app.config["RATELIMIT_STORAGE_URI"] == "redis+unix:///tmp/x/redis.sock"


def test_each_retry_cap_is_its_setting_and_tasks_without_one_never_retry(make_app):
    from tasks import RETRY_LIMITS

    settings = {setting: 2 + index for index, setting in enumerate(RETRY_LIMITS.values())}
    celery = celery_of(make_app(**settings))
    celery.loader.import_default_modules()
    for name, setting in RETRY_LIMITS.items():
        assert celery.tasks[name].max_retries == settings[setting], name
    for name in (task_names.RUN_JOB, task_names.PING):
        assert celery.tasks[name].max_retries == 0, name
