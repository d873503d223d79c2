"""Ask a payment provider for a payment's current status.

Timeouts on every call; retries with exponential backoff on connection errors,
429 and 5xx (honouring Retry-After), through urllib3's Retry; and a circuit
breaker (pybreaker) whose state lives in Redis, so every worker process stops
calling a provider that keeps failing.
"""
from __future__ import annotations

import datetime as dt
import time
from typing import Any, Mapping

import pybreaker
import redis
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from payments.ledger import PaymentUpdate
from payments.provider import (
    Confirmation,
    PaymentUnknown,
    Provider,
    ProviderUnavailable,
    StatusRequest,
)
from payments.providers import PROVIDERS

__all__ = ["PaymentUnknown", "ProviderStatusClient", "ProviderUnavailable", "status_clients"]


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
    def __init__(self, provider: Provider, base_url: str, credentials: Mapping[str, str],
                 session: requests.Session, circuit: pybreaker.CircuitBreaker,
                 timeout: tuple[float, float]):
        self.provider = provider.name
        self._base = base_url.rstrip("/")
        self._path, self._request = provider.status_path, provider.status_request
        self._read = provider.read_status
        self._read_confirmation = provider.read_confirmation
        self._authorize, self._credentials = provider.authorize, dict(credentials)
        self._session, self._circuit, self._timeout = session, circuit, timeout

    def status(self, reference: str) -> PaymentUpdate | None:
        """The provider's view as an update, or None if it says nothing we can use.

        Raises pybreaker.CircuitBreakerError while the circuit is open.
        """
        status = self._circuit.call(self._fetch, reference, self._read)
        if status is None:
            return None
        return PaymentUpdate(provider=self.provider, reference=reference, status=status,
                             occurred_at=dt.datetime.now(dt.timezone.utc),
                             event_id="reconciliation")

    def confirm(self, reference: str) -> Confirmation:
        """The provider's own word on a payment (status, amount, currency), for a
        delivery whose claims are not signed. ProviderUnavailable if it says nothing
        usable; PaymentUnknown if it does not know the payment; CircuitBreakerError
        while the circuit is open."""
        answer = self._circuit.call(self._fetch, reference, self._read_confirmation)
        if answer is None:
            raise ProviderUnavailable("the answer named no status")
        return answer

    def _fetch(self, reference: str, read):
        if self._request is None:
            wanted = StatusRequest(
                "GET", self._path.format(reference=requests.utils.quote(reference, safe="")))
        else:
            wanted = self._request(reference, self._credentials, time.time())
        try:
            headers = self._authorize(self._credentials, self._session, self._base,
                                      self._timeout)
            response = self._session.request(wanted.method, self._base + wanted.path,
                                             json=wanted.json, headers=headers,
                                             timeout=self._timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise ProviderUnavailable(type(exc).__name__) from None
        if response.status_code == 404:
            raise PaymentUnknown(reference)
        if response.status_code != 200:
            raise ProviderUnavailable(f"HTTP {response.status_code}")
        try:
            return read(response.json())
        except ValueError:
            raise ProviderUnavailable("the answer was not JSON") from None


def status_clients(config: Mapping[str, Any],
                   client: redis.Redis) -> dict[str, ProviderStatusClient]:
    """One client per provider whose API credentials are all configured."""
    session = http_session(config["RECONCILE_HTTP_RETRIES"], config["RECONCILE_HTTP_BACKOFF"])
    timeout = (config["RECONCILE_CONNECT_TIMEOUT"], config["RECONCILE_READ_TIMEOUT"])
    clients = {}
    for provider in PROVIDERS.values():
        if provider.status_path is None:  # no status API to ask (Adyen)
            continue
        names = (provider.api_key_setting, *provider.api_credential_settings)
        credentials = {name: config.get(name) for name in names}
        if all(credentials.values()):
            circuit = breaker(client, provider.name,
                              failures=config["RECONCILE_BREAKER_FAILURES"],
                              reset_after=config["RECONCILE_BREAKER_RESET"],
                              prefix=config["REDIS_KEY_PREFIX"])
            clients[provider.name] = ProviderStatusClient(
                provider, config[provider.api_base_setting], credentials, session, circuit,
                timeout)
    return clients
