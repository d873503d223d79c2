"""The console's Destinations pages: they render under the CSP, escape what a client
named, carry CSRF on every button, call the same audited operations as the admin API,
and show a rotated secret once, on the page, never in the session cookie."""
import re

from sqlalchemy import select

from deliveries import destinations as ops
from deliveries.models import Delivery
from tests.webapp.test_ops import audit_actions, post
from webapp.extensions import db

HOSTILE = "<script>alert(1)</script>"


def make_destination(app, name="backend"):
    with app.app_context():
        found, secret = ops.create(db.session, "test", name=name, url="http://127.0.0.1:9/h",
                                   event_types=["payment.*"], allowed_networks=["127.0.0.0/8"],
                                   allow_http=True)
        db.session.commit()
        return found.id, secret


def test_the_pages_render_escaped_under_the_csp(ops_app, operator):
    destination_id, secret = make_destination(ops_app, name=HOSTILE)
    for path in ("/ops/destinations", f"/ops/destinations/{destination_id}",
                 f"/ops/destinations/{destination_id}?status=failed"):
        page = operator.get(path)
        assert page.status_code == 200, path
        assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
        html = page.get_data(as_text=True)
        assert HOSTILE not in html and "&lt;script&gt;" in html, path
        assert secret not in html  # the secret is never shown again
    assert operator.get("/ops/destinations/999999").status_code == 404


def test_every_button_is_an_audited_operation(ops_app, operator):
    destination_id, _ = make_destination(ops_app)
    page = f"/ops/destinations/{destination_id}"
    assert post(operator, f"{page}/pause", page, paused="1").status_code == 303
    with ops_app.app_context():
        assert ops.get(db.session, destination_id).paused
    assert post(operator, f"{page}/pause", page, paused="0").status_code == 303
    assert post(operator, f"{page}/send-test", page).status_code == 303
    with ops_app.app_context():
        delivery_id = db.session.scalar(select(Delivery.id))
    assert post(operator, f"{page}/deliveries/{delivery_id}/retry", page).status_code == 303
    assert post(operator, f"{page}/recover", page, hours="24").status_code == 303
    bad = post(operator, f"{page}/recover", page, hours="x")
    assert bad.status_code == 303
    assert "Hours is a whole number" in operator.get(page).get_data(as_text=True)
    for action in ("destination.change", "destination.send_test", "delivery.retry",
                   "destination.recover"):
        assert ("client:alice-oncall" in {a for a, _ in audit_actions(ops_app, action)}), action


def test_rotating_shows_the_new_secret_once_and_keeps_it_out_of_the_cookie(ops_app, operator):
    destination_id, old = make_destination(ops_app)
    page = f"/ops/destinations/{destination_id}"
    rotated = post(operator, f"{page}/rotate", page)
    assert rotated.status_code == 200
    secret = re.search(r"<code>(whsec_[A-Za-z0-9+/=]+)</code>",
                       rotated.get_data(as_text=True)).group(1)
    assert secret != old
    assert secret not in rotated.headers.get("Set-Cookie", "")
    with ops_app.app_context():
        assert ops.get(db.session, destination_id).secret == secret
    assert secret not in operator.get(page).get_data(as_text=True)
    assert ("client:alice-oncall", str(destination_id)) in audit_actions(
        ops_app, "destination.rotate_secret")


def test_a_button_without_its_csrf_token_does_nothing(ops_app, operator):
    destination_id, _ = make_destination(ops_app)
    refused = operator.post(f"/ops/destinations/{destination_id}/pause", data={"paused": "1"})
    assert refused.status_code == 400
    with ops_app.app_context():
        assert not ops.get(db.session, destination_id).paused


def test_the_gauges_show_each_destinations_backlog_age_and_state(make_app):
    from tests.webapp.test_backlog_metrics import gauges
    app = make_app(METRICS_CACHE_SECONDS=0)
    destination_id, _ = make_destination(app)
    label = f'{{destination="{destination_id}"}}'
    assert gauges(app)[f"sluice_destination_backlog{label}"] == 0
    with app.app_context():
        found = ops.get(db.session, destination_id)
        ops.send_test(db.session, found, "test")
        found.state = "failing"
        db.session.commit()
    now = gauges(app)
    assert now[f"sluice_destination_backlog{label}"] == 1
    assert now[f"sluice_destination_oldest_waiting_age_seconds{label}"] >= 0
    assert now[f'sluice_destination_state{{destination="{destination_id}",state="failing"}}'] == 1


def test_the_overview_flags_a_failing_destination_and_failed_deliveries(ops_app, operator):
    failing_id, _ = make_destination(ops_app, name="down")
    healthy_id, _ = make_destination(ops_app, name="up")
    with ops_app.app_context():
        ops.get(db.session, failing_id).state = "failing"
        delivery = ops.send_test(db.session, ops.get(db.session, healthy_id), "test")
        delivery.status = "failed"
        db.session.commit()
    html = operator.get("/ops/").get_data(as_text=True)
    assert f"destination {failing_id} is failing: 0 deliveries wait" in html
    assert f'href="/ops/destinations/{failing_id}"' in html
    assert f"destination {healthy_id} has 1 failed deliveries: Recover" in html
