"""payment_history (payments/history.py): the database writes every change to a
payment, whichever code makes it, and refuses to rewrite or remove the history."""
from __future__ import annotations

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import DatabaseError

from payments.history import history
from payments.ledger import Payment
from tests.webhooks.test_processing import payment, run, session, stripe  # noqa: F401


def test_every_transition_of_a_payment_is_in_its_history(session):  # noqa: F811
    run(session, stripe("e1", "payment_intent.created", 100),
        stripe("e2", "payment_intent.succeeded", 200),
        stripe("e1", "payment_intent.created", 100),   # a stale repeat: no change
        stripe("e3", "charge.refunded", 300, intent="ch_1", payment_intent="pi_1"))
    paid = payment(session)
    changes = [(c.operation, c.old_status, c.new_status, c.new_amount, c.event_id)
               for c in history(session, paid.id)]
    assert changes == [("insert", None, "pending", 1500, "e1"),
                       ("update", "pending", "succeeded", 1500, "e2"),
                       ("update", "succeeded", "refunded", 1500, "e3")]
    assert len(changes) == paid.transitions
    # a change made behind the ledger's back is recorded too
    session.execute(update(Payment).where(Payment.id == paid.id).values(amount=1))
    last = history(session, paid.id)[-1]
    assert (last.operation, last.old_amount, last.new_amount) == ("update", 1500, 1)
    assert last.changed_at is not None


@pytest.mark.parametrize("statement", ["UPDATE payment_history SET new_status = 'x'",
                                       "DELETE FROM payment_history"])
def test_the_history_refuses_to_be_rewritten(session, statement):  # noqa: F811
    run(session, stripe("e1", "payment_intent.created", 100))
    with pytest.raises(DatabaseError, match="append-only"):
        with session.begin_nested():
            session.execute(text(statement))
    assert len(history(session, payment(session).id)) == 1
