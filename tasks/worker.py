"""Entry point for `celery -A tasks.worker worker|beat`.

The only place outside the web server that builds the Flask app.
"""
from webapp import create_app
from webapp.config import exit_on_config_error

with exit_on_config_error():
    flask_app = create_app({"OUTBOX_PUBLISH_AFTER_COMMIT": True})
celery_app = flask_app.extensions["celery"]
