"""The shipped alert rules and dashboard: valid to promtool, proven on synthetic
series, and querying only metrics that /metrics really serves."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import yaml

from tests.e2e.harness import REPO
from tests.services import unavailable

PROMETHEUS = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "sluice.json"
METRIC = re.compile(r"\b(sluice_[a-z_]+)")


def promtool(*args: str) -> subprocess.CompletedProcess:
    executable = shutil.which("promtool")
    if executable is None:
        unavailable("promtool (apt-get install prometheus)")
    return subprocess.run([executable, *args], cwd=PROMETHEUS, capture_output=True, text=True,
                          timeout=60)


def test_the_alert_rules_are_valid():
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 12 rules found" in result.stdout


def test_the_alerts_fire_on_a_broken_sluice_and_stay_silent_on_a_healthy_one():
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_runbook():
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"][0]["rules"]
    assert {rule["alert"] for rule in rules} >= {
        "SluiceDeadEvents", "SluiceOutboxStuck", "SluiceEventsWaiting", "SluiceJobStale",
        "SluiceScanBacklog", "SluiceWebhook5xx", "SluiceSignatureFailures",
        "SluiceClamdSignaturesOld", "SluiceRateLimitFallback"}
    assert all(len(rule["annotations"]["runbook"]) > 40 for rule in rules)


def queried_metrics() -> set[str]:
    expressions = [target["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"]
                   for target in panel["targets"]]
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"][0]["rules"]
    expressions += [rule["expr"] for rule in rules]
    return {re.sub(r"_(bucket|sum|count)$", "", name)
            for expression in expressions for name in METRIC.findall(expression)}


# The tests' clamd has only our EICAR .ndb, whose VERSION carries no database date, and
# the signature-age family is served only with one: this is what a worker's clamd says
# with Debian's signatures.
DATED_VERSION = "ClamAV 1.0.7/27500/Tue Dec  1 08:00:00 2026"


def test_every_metric_the_dashboard_and_alerts_query_is_served(make_app):
    from tasks import scanner_state
    from tasks.app_state import redis_client

    app = make_app(METRICS_CACHE_SECONDS=0)
    with app.app_context():  # as a worker reports its clamd
        scanner_state.record(redis_client(), app.config["REDIS_KEY_PREFIX"],
                             {"status": "ok", "version": DATED_VERSION}, 60)
    text = app.test_client().get("/metrics").get_data(as_text=True)
    served = set(re.findall(r"^# TYPE (sluice_[a-z_]+)", text, re.MULTILINE))
    served |= {name.removesuffix("_total") for name in served}
    served |= {name + "_total" for name in served}
    missing = queried_metrics() - served
    assert len(queried_metrics()) >= 15
    assert missing == set(), missing
