"""What a web worker does not load: each of these cost it megabytes of RSS
(bench/documents), for work only the CLI or the Celery worker does."""
import json
import subprocess
import sys

# boto3 too: it is imported only for an s3:// STORAGE_URL, never for the default;
# and OpenTelemetry's tracing, only when an OTEL_* variable turns it on. (redis-py 7
# imports OpenTelemetry's metrics API by itself whenever the package is installed,
# as it is with the [otel] and test extras: not ours to keep out.)
# Celery and kombu too: the web never talks to the broker (the workers' relay
# publishes, and the workers measure the queues for /metrics and the console).
WORKER_ONLY = ("alembic", "requests", "pybreaker", "pkg_resources", "openpyxl", "boto3",
               "opentelemetry.sdk.trace", "opentelemetry.instrumentation", "celery", "kombu",
               "amqp", "billiard")


def test_the_web_app_leaves_cli_and_worker_only_libraries_unloaded(app_config, tmp_path):
    script = f"""
import json, sys
from webapp import create_app
app = create_app({app_config!r})
client = app.test_client()
statuses = [client.get(path).status_code
            for path in ("/livez", "/startupz", "/readyz", "/metrics")]
print(json.dumps({{"statuses": statuses,
                  "loaded": [name for name in {WORKER_ONLY!r} if name in sys.modules]}}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True, env={"SLUICE_INSTANCE_PATH": str(tmp_path / "i"),
                                             "PATH": "/usr/bin:/bin"})
    outcome = json.loads(result.stdout.splitlines()[-1])
    assert outcome["statuses"][:2] == [200, 200]  # /readyz may be 503: no clamd here
    assert outcome["statuses"][3] == 200
    assert outcome["loaded"] == []
