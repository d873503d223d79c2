"""PayPal: each delivery is signed with PayPal's RSA key, over
`<transmission id>|<transmission time>|<webhook id>|<CRC32 of the body, decimal>`,
the signature in PAYPAL-TRANSMISSION-SIG (base64, PAYPAL-AUTH-ALGO SHA256withRSA), the
certificate at the URL in PAYPAL-CERT-URL. The webhook id is the source's
`webhook_id` (not a secret: what the signature binds the delivery to).

The certificate URL is hostile input: it must be https on a host under
`paypal_cert_hosts` (default paypal.com), and it is fetched through the guarded client
(store/fetch.py: public addresses only, every redirect checked, 5 s to connect, 10 s
to read, 64 KB at most). The chain it holds must lead to a trusted root (the system's
bundle, or `paypal_ca_file`), be valid now, and its leaf must name a host under
paypal.com; its key is then kept per URL until the certificate expires (or a day).
The transmission time must be within the source's tolerance. A certificate that
cannot be fetched refuses the delivery (401), and PayPal retries it.

PayPal sends no shared secret, so a source names none; its own test delivery cannot
be signed by Sluice (PayPal's dashboard sends one). The event key is the body's `id`.
PAYMENT.CAPTURE.* events move the capture they name (a refund names its capture in
its `up` link); amounts come in major units ("10.00") and are kept in minor units.
Reconciliation asks `GET /v2/payments/captures/{id}` with a client-credentials token
(`PAYPAL_CLIENT_ID`, `PAYPAL_CLIENT_SECRET`).
"""
from __future__ import annotations

import datetime as dt
import threading
import time
import zlib
from typing import Any, Mapping

from payments.ledger import FAILED, PENDING, REFUNDED, SUCCEEDED, PaymentUpdate
from payments.provider import (
    OAuthClientCredentials,
    Provider,
    currency,
    json_object,
    minor_units,
    text,
)
from store.fetch_policy import FetchPolicy, FetchRefused
from store.payloads import PayloadError, parse_instant
from store.signatures import (
    CannotSign,
    InvalidSignature,
    MissingSignature,
    Scheme,
    check_tolerance,
    key_from_json_field,
    type_from_json_field,
    unbase64,
)

HEADERS = ("PAYPAL-TRANSMISSION-ID", "PAYPAL-TRANSMISSION-TIME", "PAYPAL-TRANSMISSION-SIG",
           "PAYPAL-CERT-URL", "PAYPAL-AUTH-ALGO")
SIGNING_DOMAIN = "paypal.com"     # the leaf certificate must name a host under it
MAX_CERT_BYTES = 64 * 1024
KEEP_KEY_SECONDS = 86400
EVENT_STATUSES = {"PAYMENT.CAPTURE.COMPLETED": SUCCEEDED, "PAYMENT.CAPTURE.PENDING": PENDING,
                  "PAYMENT.CAPTURE.DENIED": FAILED, "PAYMENT.CAPTURE.DECLINED": FAILED,
                  "PAYMENT.CAPTURE.REFUNDED": REFUNDED, "PAYMENT.CAPTURE.REVERSED": REFUNDED}


def parse_options(table: dict) -> dict:
    webhook_id = table.pop("webhook_id", None)
    if not isinstance(webhook_id, str) or not webhook_id:
        raise ValueError("webhook_id must be set to the webhook's id from PayPal's dashboard "
                         "(what PayPal signs with each delivery)")
    hosts = table.pop("paypal_cert_hosts", [SIGNING_DOMAIN])
    networks = table.pop("paypal_allowed_networks", [])
    allow_http = table.pop("paypal_allow_http", False)
    ca_file = table.pop("paypal_ca_file", None)
    if not isinstance(hosts, list) or not hosts or \
            not all(isinstance(h, str) and h.strip(".") for h in hosts):
        raise ValueError("paypal_cert_hosts must be a list of host names")
    if not isinstance(networks, list) or not all(isinstance(n, str) for n in networks):
        raise ValueError("paypal_allowed_networks must be a list of CIDRs")
    if not isinstance(allow_http, bool):
        raise ValueError("paypal_allow_http must be true or false")
    if ca_file is not None and not isinstance(ca_file, str):
        raise ValueError("paypal_ca_file must be a path")
    FetchPolicy(allowed_hosts=(), allowed_networks=tuple(networks))  # checks the CIDRs
    return {"webhook_id": webhook_id, "ca_file": ca_file, "policy": FetchPolicy(
        allowed_hosts=tuple(h.lower().strip(".") for h in hosts), allow_http=allow_http,
        allowed_networks=tuple(networks), connect_timeout=5.0, read_timeout=10.0)}


def signed_text(headers: Mapping[str, str], webhook_id: str, body: bytes) -> bytes:
    return "|".join((headers["PAYPAL-TRANSMISSION-ID"], headers["PAYPAL-TRANSMISSION-TIME"],
                     webhook_id, str(zlib.crc32(body) & 0xFFFFFFFF))).encode("utf-8")


def verify(source, headers: Mapping[str, str], body: bytes, now: float, url: str = "") -> None:
    if not all(headers.get(name) for name in HEADERS):
        raise MissingSignature(f"PayPal's headers are required: {', '.join(HEADERS)}")
    if headers["PAYPAL-AUTH-ALGO"] != "SHA256withRSA":
        raise InvalidSignature("PAYPAL-AUTH-ALGO must be SHA256withRSA")
    sent = parse_instant(headers["PAYPAL-TRANSMISSION-TIME"])
    if sent is None:
        raise InvalidSignature("malformed PAYPAL-TRANSMISSION-TIME")
    check_tolerance(int(sent.timestamp()), now, source.tolerance)
    signature = unbase64(headers["PAYPAL-TRANSMISSION-SIG"].strip())
    if not signature:
        raise InvalidSignature("malformed PAYPAL-TRANSMISSION-SIG")
    key = CERTIFICATES.key(headers["PAYPAL-CERT-URL"].strip(), source.options, now)
    try:
        message = signed_text(headers, source.options["webhook_id"], body)
    except UnicodeEncodeError:
        raise InvalidSignature("malformed transmission headers") from None
    from cryptography.exceptions import InvalidSignature as BadSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    try:
        key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except (BadSignature, ValueError, TypeError):
        raise InvalidSignature("signature did not match") from None


class Certificates:
    """PayPal's signing keys by certificate URL, each kept until its certificate
    expires (or a day), after its chain was checked. Per process."""

    def __init__(self, size: int = 32):
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[Any, float]] = {}
        self._size = size

    def key(self, url: str, options: Mapping[str, Any], now: float):
        with self._lock:
            kept = self._keys.get(url)
        if kept is not None and kept[1] > time.time():
            return kept[0]
        policy = options["policy"]
        try:
            policy.check_url(url)
        except FetchRefused:
            raise InvalidSignature("PAYPAL-CERT-URL is not on an allowed host") from None
        key, expires = _checked_key(_fetch(url, policy), options.get("ca_file"), now)
        with self._lock:
            if len(self._keys) >= self._size:
                self._keys.clear()
            self._keys[url] = (key, min(expires, time.time() + KEEP_KEY_SECONDS))
        return key


CERTIFICATES = Certificates()


def _fetch(url: str, policy: FetchPolicy) -> bytes:
    # The web loads an HTTP client only when a PayPal delivery needs a certificate.
    from store import fetch

    session = fetch.session_for(policy)
    try:
        answer = fetch.get(session, policy, url)
        if answer.status != 200:
            answer.close()
            raise InvalidSignature(f"the certificate URL answered {answer.status}")
        return b"".join(answer.iter_bytes(MAX_CERT_BYTES))
    except (fetch.FetchRefused, fetch.FetchFailed):
        raise InvalidSignature("the signing certificate could not be fetched") from None
    finally:
        session.close()


def _checked_key(pem: bytes, ca_file: str | None, now: float):
    """The leaf's public key once its chain leads to a trusted root and it names a
    host under paypal.com; InvalidSignature otherwise."""
    from cryptography import x509
    from cryptography.x509.verification import PolicyBuilder, VerificationError

    try:
        chain = x509.load_pem_x509_certificates(pem)
        leaf = chain[0]
        names = leaf.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except (ValueError, IndexError, x509.ExtensionNotFound):
        raise InvalidSignature("the signing certificate is not a certificate chain") from None
    name = next((n for n in names if n.lower().endswith("." + SIGNING_DOMAIN)), None)
    if name is None:
        raise InvalidSignature("the signing certificate does not name a PayPal host")
    verifier = (PolicyBuilder().store(_roots(ca_file))
                .time(dt.datetime.fromtimestamp(now, dt.timezone.utc))
                .build_server_verifier(x509.DNSName(name)))
    try:
        verifier.verify(leaf, chain[1:])
    except VerificationError:
        raise InvalidSignature("the signing certificate's chain is not trusted") from None
    return leaf.public_key(), leaf.not_valid_after_utc.timestamp()


_ROOTS: dict[str | None, Any] = {}


def _roots(ca_file: str | None):
    from cryptography import x509
    from cryptography.x509.verification import Store

    if ca_file not in _ROOTS:
        if ca_file is None:
            import certifi  # requests' own bundle of trusted roots

            ca_file = certifi.where()
        with open(ca_file, "rb") as handle:
            _ROOTS[ca_file] = Store(x509.load_pem_x509_certificates(handle.read()))
    return _ROOTS[ca_file]


def test_delivery(source, url: str, now: float) -> tuple[bytes, dict[str, str]]:
    raise CannotSign("PayPal signs its deliveries with its own private key, which Sluice "
                     "does not have: send a test from the Webhooks simulator in PayPal's "
                     "dashboard.")


SCHEME = Scheme("paypal", verify, event_key=key_from_json_field("id"),
                event_type=type_from_json_field("event_type"), parse_options=parse_options,
                test_delivery=test_delivery, needs_secret=False)


def _captured(resource: dict, event_type: str) -> str | None:
    if event_type in ("PAYMENT.CAPTURE.REFUNDED", "PAYMENT.CAPTURE.REVERSED") and \
            resource.get("links"):
        for link in resource["links"] if isinstance(resource["links"], list) else []:
            if isinstance(link, dict) and link.get("rel") == "up" and \
                    isinstance(link.get("href"), str) and "/captures/" in link["href"]:
                return text(link["href"].rstrip("/").rsplit("/", 1)[-1])
        return None
    return text(resource.get("id"))


def read_event(payload: Any, provider: str, received_at: dt.datetime) -> PaymentUpdate | None:
    event = json_object(payload)
    event_type = text(event.get("event_type")) or ""
    status = EVENT_STATUSES.get(event_type)
    if status is None:
        return None
    resource = json_object(event, "resource")
    reference = _captured(resource, event_type)
    if reference is None:
        raise PayloadError("the event names no capture")
    money = resource.get("amount") if isinstance(resource.get("amount"), dict) else {}
    code = currency(money.get("currency_code"))
    refund = status == REFUNDED
    return PaymentUpdate(
        provider=provider, reference=reference, status=status,
        occurred_at=parse_instant(event.get("create_time")) or received_at,
        event_id=text(event.get("id")) or "",
        amount=None if refund else minor_units(money.get("value"), code), currency=code)


API_STATUSES = {"COMPLETED": SUCCEEDED, "PENDING": PENDING, "DECLINED": FAILED,
                "FAILED": FAILED, "REFUNDED": REFUNDED}


def read_status(body: Any) -> str | None:
    return API_STATUSES.get(text(body.get("status"))) if isinstance(body, dict) else None


PROVIDER = Provider(
    name="paypal", scheme=SCHEME, read_event=read_event,
    status_path="/v2/payments/captures/{reference}", read_status=read_status,
    api_base_setting="PAYPAL_API_BASE", default_api_base="https://api-m.paypal.com",
    api_key_setting="PAYPAL_CLIENT_ID", api_credential_settings=("PAYPAL_CLIENT_SECRET",),
    authorize=OAuthClientCredentials("/v1/oauth2/token", secret="PAYPAL_CLIENT_SECRET",
                                     method="POST", form={"grant_type": "client_credentials"}))
