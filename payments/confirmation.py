"""Confirming a delivery with the provider's API before it changes the ledger.

Some providers' deliveries prove only who sent them, not what they say: Flutterwave's
`verif-hash` is a static secret, M-Pesa's callbacks carry nothing at all. For those
(`Provider.confirm`), the handler asks the provider's status API, and the ledger
takes the API's status, amount and currency, never the delivery's. A delivery whose
amount or currency the API (or the payment the ledger already holds) contradicts is
refused: an `Unconfirmed` error, which makes the event dead with its reason at once.
The API being away is an ordinary failure: the event is retried.
"""
from __future__ import annotations

import dataclasses
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from payments.ledger import Payment, PaymentUpdate
from payments.provider import Confirmation, PaymentUnknown, ProviderUnavailable
from store.payloads import PayloadError


class Unconfirmed(PayloadError):
    """The provider's API contradicts the delivery: the same on every attempt."""


class Confirmer(Protocol):  # payments.status_api.ProviderStatusClient
    def confirm(self, reference: str) -> Confirmation: ...


def confirmed(session: Session, change: PaymentUpdate,
              client: Confirmer | None) -> PaymentUpdate:
    """The update as the provider's API states it. Raises Unconfirmed (dead),
    or ProviderUnavailable / the breaker's error (retried)."""
    if client is None:
        raise ProviderUnavailable(f"no API credentials are configured for {change.provider}")
    try:
        state = client.confirm(change.reference)
    except PaymentUnknown:
        raise Unconfirmed("the provider's API does not know this payment") from None
    held = session.execute(select(Payment.amount, Payment.currency).where(
        Payment.provider == change.provider, Payment.reference == change.reference)).first()
    _agree("the delivery", change.amount, change.currency, state)
    if held is not None:
        _agree("the ledger", held.amount, held.currency, state)
    return dataclasses.replace(change, status=state.status, amount=state.amount,
                               currency=state.currency)


def _agree(whose: str, amount: int | None, currency: str | None,
           state: Confirmation) -> None:
    # Amounts and currency codes are not personal data, so the reason may name them.
    if amount is not None and state.amount is not None and amount != state.amount:
        raise Unconfirmed(f"amount mismatch: {whose} says {amount}, the provider's API "
                          f"{state.amount} (minor units)")
    if currency and state.currency and currency.upper() != state.currency.upper():
        raise Unconfirmed(f"currency mismatch: {whose} says {currency}, the provider's "
                          f"API {state.currency}")
