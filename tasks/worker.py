"""Entry point for `celery -A tasks.worker worker|beat`.

The only place outside the web server that builds the Flask app, and the only one
that gives it a Celery app for good (the web never has one).
"""
from tasks.celery_app import celery_init_app
from tasks.schedule import ScheduleError
from webapp import create_app
from webapp.config import ConfigError, exit_on_config_error

with exit_on_config_error():
    flask_app = create_app()
    try:
        celery_app = celery_init_app(flask_app)
    except ScheduleError as exc:
        raise ConfigError(str(exc)) from None
