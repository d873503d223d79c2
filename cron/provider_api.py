"""Ask a payment provider for a payment's current status.

Timeouts on every call; retries with exponential backoff on connection errors,
429 and 5xx (honouring Retry-After), through urllib3's Retry; and a circuit
breaker (pybreaker) whose state lives in Redis, so every worker process stops
calling a provider that keeps failing.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable

import pybreaker
import redis
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from webhooks.payments import FAILED, PENDING, REFUNDED, SUCCEEDED, PaymentUpdate


class ProviderUnavailable(RuntimeError):
    """The provider did not answer usefully after retries (counts against the breaker)."""


class PaymentUnknown(LookupError):
    """The provider does not know this payment (does not count against the breaker)."""


STRIPE_STATUSES = {
    "succeeded": SUCCEEDED, "canceled": FAILED, "requires_payment_method": FAILED,
    "processing": PENDING, "requires_action": PENDING, "requires_confirmation": PENDING,
    "requires_capture": PENDING,
}
PAYSTACK_STATUSES = {
    "success": SUCCEEDED, "failed": FAILED, "abandoned": FAILED, "reversed": REFUNDED,
    "ongoing": PENDING, "pending": PENDING, "processing": PENDING, "queued": PENDING,
}


def _stripe(body: Any) -> str | None:
    return STRIPE_STATUSES.get(body.get("status")) if isinstance(body, dict) else None


def _paystack(body: Any) -> str | None:
    data = body.get("data") if isinstance(body, dict) else None
    return PAYSTACK_STATUSES.get(data.get("status")) if isinstance(data, dict) else None


# provider: (path template, reader of the documented response body)
ENDPOINTS: dict[str, tuple[str, Callable[[Any], str | None]]] = {
    "stripe": ("/v1/payment_intents/{reference}", _stripe),
    "paystack": ("/transaction/verify/{reference}", _paystack),
}


def http_session(retries: int, backoff: float) -> requests.Session:
    session = requests.Session()
    retry = Retry(total=retries, backoff_factor=backoff, allowed_methods={"GET"},
                  status_forcelist=(429, 500, 502, 503, 504),
                  respect_retry_after_header=True, raise_on_status=False)
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


def breaker(client: redis.Redis, provider: str, *, failures: int, reset_after: float,
            prefix: str) -> pybreaker.CircuitBreaker:
    storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, client,
                                            namespace=f"{prefix}breaker:{provider}")
    return pybreaker.CircuitBreaker(fail_max=failures, reset_timeout=reset_after,
                                    exclude=[PaymentUnknown], state_storage=storage,
                                    name=provider)


class ProviderStatusClient:
    def __init__(self, provider: str, base_url: str, api_key: str,
                 session: requests.Session, circuit: pybreaker.CircuitBreaker,
                 timeout: tuple[float, float]):
        self.provider = provider
        self._url = base_url.rstrip("/") + ENDPOINTS[provider][0]
        self._read = ENDPOINTS[provider][1]
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._session, self._circuit, self._timeout = session, circuit, timeout

    def status(self, reference: str) -> PaymentUpdate | None:
        """The provider's view as an update, or None if it says nothing we can use.

        Raises pybreaker.CircuitBreakerError while the circuit is open.
        """
        status = self._circuit.call(self._fetch, reference)
        if status is None:
            return None
        return PaymentUpdate(provider=self.provider, reference=reference, status=status,
                             occurred_at=dt.datetime.now(dt.timezone.utc),
                             event_id="reconciliation")

    def _fetch(self, reference: str) -> str | None:
        url = self._url.format(reference=requests.utils.quote(reference, safe=""))
        try:
            response = self._session.get(url, headers=self._headers, timeout=self._timeout)
        except requests.RequestException as exc:
            raise ProviderUnavailable(type(exc).__name__) from None
        if response.status_code == 404:
            raise PaymentUnknown(reference)
        if response.status_code != 200:
            raise ProviderUnavailable(f"HTTP {response.status_code}")
        try:
            return self._read(response.json())
        except ValueError:
            raise ProviderUnavailable("the answer was not JSON") from None
