"""What a payment provider module declares, and helpers its event reader uses.

A provider module (payments/providers/<name>.py) holds everything Sluice knows
about one provider: how its deliveries are signed (its `Scheme`), how to read its
webhook events, how its statuses map onto the ledger's, where its status API answers
for reconciliation and how it wants to be authenticated, and which settings hold
that API's base URL and credentials. `payments/providers/__init__.py` lists them.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import threading
import time
from typing import Any, Callable, Mapping

from payments.ledger import PaymentUpdate
from store.payloads import PayloadError, identifier, int64
from store.signatures import Scheme


class ProviderUnavailable(RuntimeError):
    """The provider did not answer usefully after retries (counts against the breaker)."""


class PaymentUnknown(LookupError):
    """The provider does not know this payment (does not count against the breaker)."""


@dataclasses.dataclass(frozen=True)
class Confirmation:
    """What a provider's API says of a payment: the state the ledger takes from it."""
    status: str
    amount: int | None = None   # minor units
    currency: str | None = None


# payload, provider name (a source may rename it), when it was received
EventReader = Callable[[Any, str, dt.datetime], "PaymentUpdate | None"]
# (the configured values of the provider's credential settings, the HTTP session, the
# API's base URL, the timeout) -> the request's headers; static ones ignore the rest,
# an OAuth token (M-Pesa's) is fetched with them
Authorize = Callable[..., dict[str, str]]


@dataclasses.dataclass(frozen=True)
class StatusRequest:
    """How to ask the status API about one payment, when a GET of `status_path` will
    not do (M-Pesa's query is a POST with a signed body)."""
    method: str
    path: str
    json: dict | None = None


def bearer(credentials: Mapping[str, str], *context) -> dict[str, str]:
    """`Authorization: Bearer <the first credential>`: Stripe's and Paystack's way."""
    return {"Authorization": f"Bearer {next(iter(credentials.values()))}"}


def basic(credentials: Mapping[str, str], *context) -> dict[str, str]:
    """HTTP basic auth with the key as the user and the next credential as the password
    (Razorpay's key id and key secret)."""
    user, password = list(credentials.values())[:2]
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class OAuthClientCredentials:
    """An `authorize` for APIs that take a client-credentials token (M-Pesa's Daraja,
    PayPal): fetched at `token_path` with HTTP basic auth (the key and the credential
    named `secret`), and kept until a minute before it expires, per API and key, per
    process (each worker asks for its own)."""

    def __init__(self, token_path: str, secret: str, method: str = "GET",
                 form: Mapping[str, str] | None = None):
        self._path, self._secret, self._method, self._form = token_path, secret, method, form
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}

    def __call__(self, credentials: Mapping[str, str], session, base_url: str,
                 timeout) -> dict[str, str]:
        key = next(iter(credentials.values()))
        with self._lock:
            token = self._tokens.get((base_url, key))
            if token is None or token[1] <= time.monotonic():
                answer = session.request(self._method, base_url + self._path, data=self._form,
                                         auth=(key, credentials[self._secret]),
                                         timeout=timeout, allow_redirects=False)
                token = self._tokens[(base_url, key)] = _token_of(answer)
            return {"Authorization": f"Bearer {token[0]}"}


def _token_of(answer) -> tuple[str, float]:
    try:
        body = answer.json() if answer.status_code == 200 else {}
    except ValueError:
        body = {}
    token = body.get("access_token") if isinstance(body, dict) else None
    lifetime = str(body.get("expires_in", "")) if isinstance(body, dict) else ""
    if not isinstance(token, str) or not token or not lifetime.isdigit():
        raise ProviderUnavailable(f"no OAuth token (HTTP {answer.status_code})")
    return token, time.monotonic() + max(int(lifetime) - 60, 0)


@dataclasses.dataclass(frozen=True)
class Provider:
    name: str
    scheme: Scheme                     # how its deliveries are signed, of the same name
    read_event: EventReader            # None for event types we do not act on
    # Its status API, for reconciliation and confirmation; a provider without one
    # (Adyen) leaves these None, and its payments are not reconciled.
    status_path: str | None = None     # status API path, with {reference}
    read_status: Callable[[Any], str | None] | None = None  # its JSON -> a ledger status
    api_base_setting: str | None = None  # settings: the API's base URL ...
    default_api_base: str | None = None
    api_key_setting: str | None = None   # ... and its secret key (environment only)
    # further credential settings the API needs besides the key (all must be set)
    api_credential_settings: tuple[str, ...] = ()
    authorize: Authorize = bearer      # credentials (key first) -> request headers
    # (reference, credentials, now) -> the request; None: GET status_path
    status_request: Callable[[str, Mapping[str, str], float], StatusRequest] | None = None
    # Whether a delivery's claims need the API's confirmation before they change the
    # ledger (a scheme of `token` trust proves the sender, not the content): the
    # handler then asks the status API, and the ledger takes its answer.
    confirm: bool = False
    # the status API's JSON -> status, amount and currency (required to confirm)
    read_confirmation: Callable[[Any], Confirmation | None] | None = None

    def __post_init__(self):
        if self.scheme.name != self.name or self.scheme.kind != "payment":
            raise TypeError(f"provider {self.name}: declare its payment scheme, of its name")
        if self.confirm and (self.read_confirmation is None or self.status_path is None):
            raise TypeError(f"provider {self.name}: confirming needs its status API and "
                            f"read_confirmation")


def json_object(payload: Any, *path: str) -> dict:
    """The JSON object at `path`, or PayloadError."""
    node = payload
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        raise PayloadError(f"missing object {'.'.join(path) or 'at the top level'}")
    return node


def text(value: Any, limit: int = 255) -> str | None:
    """An identifier (reference, event id) exactly as sent, or None if it cannot be one."""
    return identifier(value, limit)


def currency(value: Any) -> str | None:
    return identifier(value, 10)


def amount(value: Any) -> int | None:
    """Minor units that fit the ledger's BIGINT; None for anything else."""
    return int64(value)


# ISO 4217 currencies without minor units, among those the providers here settle in
ZERO_DECIMAL = frozenset({"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG",
                          "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"})


def minor_units(value: Any, currency_code: str | None) -> int | None:
    """An amount a provider gives in major units (Flutterwave's `100.5` NGN) in the
    ledger's minor units, exactly; None for anything that is not a plain number or
    does not come out whole."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = decimal.Decimal(str(value))
    except decimal.InvalidOperation:
        return None
    if not number.is_finite():
        return None
    scaled = number.scaleb(0 if (currency_code or "").upper() in ZERO_DECIMAL else 2)
    return int64(int(scaled)) if scaled == scaled.to_integral_value() else None
