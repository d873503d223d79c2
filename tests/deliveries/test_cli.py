"""`flask destinations ...` calls the same audited operations as the API and console."""
from sqlalchemy import select

from deliveries.models import Destination
from store.audit import AuditLog
from webapp.extensions import db


def test_create_list_pause_resume_rotate_test_and_delete(app, runner):
    created = runner.invoke(args=["destinations", "create", "backend", "http://127.0.0.1:9/h",
                                  "--events", "payment.*,document.scanned",
                                  "--allow-network", "127.0.0.0/8", "--allow-http"])
    assert created.exit_code == 0, created.output
    assert "secret (store it now" in created.output and "whsec_" in created.output
    with app.app_context():
        destination = db.session.scalar(select(Destination))
        assert destination.event_types == ["document.scanned", "payment.*"]
    listed = runner.invoke(args=["destinations", "list"]).output
    assert "backend" in listed and "active" in listed
    assert "paused" in runner.invoke(args=["destinations", "pause", str(destination.id)]).output
    assert "(active)" in runner.invoke(args=["destinations", "resume", str(destination.id)]).output
    rotated = runner.invoke(args=["destinations", "rotate-secret", str(destination.id),
                                  "--grace-seconds", "60"])
    assert rotated.exit_code == 0 and "whsec_" in rotated.output
    assert "queued" in runner.invoke(args=["destinations", "send-test", str(destination.id)]).output
    listing = runner.invoke(args=["destinations", "deliveries", str(destination.id)]).output
    assert "sluice.test" in listing and "pending" in listing
    assert "deleted" in runner.invoke(args=["destinations", "delete", str(destination.id)]).output
    with app.app_context():
        actors = set(db.session.scalars(select(AuditLog.actor).where(
            AuditLog.subject_type == "destination")))
    assert len(actors) == 1 and actors.pop().startswith("cli:")


def test_refusals_are_one_clear_line(runner):
    private = runner.invoke(args=["destinations", "create", "x", "https://127.0.0.1/",
                                  "--events", "*"])
    assert private.exit_code == 1
    assert "not public" in private.output and "address_refused" in private.output
    assert "Traceback" not in private.output
    missing = runner.invoke(args=["destinations", "pause", "424242"])
    assert missing.exit_code == 1 and "no destination with id 424242" in missing.output
    rotated = runner.invoke(args=["destinations", "rotate-secret", "1", "--grace-seconds", "-1"])
    assert rotated.exit_code == 1
