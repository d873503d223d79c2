"""What a signature scheme declares, and the pieces its rules are built from.

A scheme is declared by the module of the provider that speaks it (a payment
provider in payments/providers/, a WhatsApp one in whatsapp/), or by a
generic scheme's module in webhooks/schemes/: how to verify a delivery over its raw
bytes, how far that proves the delivery (its trust), where its event key comes
from, where its event type comes from, and what the sender wants in answer. There
is no fallback: a scheme without an event-key rule cannot be declared.

It lives in the kernel because both the provider modules (payments, WhatsApp) and
the web layer read it, and the provider modules sit below webhooks/.

Verifiers return None or raise a SignatureError whose `code` the HTTP layer
reports; they never raise anything else, whatever the bytes. Header values are
parsed with strict ASCII patterns and digests compared with `hmac.compare_digest`.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import re
import secrets
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from store.payloads import identifier

# A webhooks.sources.Source: named, not imported, since the kernel imports nothing above it.
Source = Any

_DIGITS = re.compile(r"^[0-9]{1,12}$")
MAX_EVENT_KEY = 255
MAX_EVENT_TYPE = 100


class SignatureError(Exception):
    code = "invalid_signature"


class MissingSignature(SignatureError):
    code = "missing_signature"


class InvalidSignature(SignatureError):
    code = "invalid_signature"


class StaleTimestamp(SignatureError):
    code = "timestamp_out_of_tolerance"


class CannotSign(Exception):
    """A scheme whose deliveries only the provider can sign (PayPal's private key) has
    no test delivery of Sluice's making; the message says how to get one."""


class InvalidPayload(ValueError):
    """A verified delivery that can never be stored or handled: 400, nothing stored."""
    code = "invalid_payload"


# How far a verified delivery proves what it says (stored on every event):
SIGNED = "signed"        # an HMAC or signature over the content
TOKEN = "token"          # a shared static secret or URL token, not bound to the content
CONFIRMED = "confirmed"  # the provider's own API confirmed the state, whatever was delivered
TRUST_LEVELS = (SIGNED, TOKEN, CONFIRMED)
# What a source carries, each with its own handler (webhooks/processing.py's HANDLERS):
KINDS = ("payment", "whatsapp", "generic")


@dataclasses.dataclass(frozen=True)
class Reply:
    """The answer a provider expects once its delivery is stored, when Sluice's own
    JSON will not do (Adyen wants the text `[accepted]`)."""
    body: str
    mimetype: str = "application/json"
    status: int = 200


# source, the GET request's query arguments -> the text to answer, or None to refuse
Handshake = Callable[[Source, Mapping[str, str]], "str | None"]
# source, headers, raw body, now -> each event of a batch delivery (Adyen's), as the body
# it is stored as, with its own verdict (None: verified); InvalidPayload for no batch
Splitter = Callable[[Source, Mapping[str, str], bytes, float],
                    "list[tuple[bytes, SignatureError | None]]"]
# source, headers, raw body, now, the full URL requested -> None or a SignatureError
Verifier = Callable[[Source, Mapping[str, str], bytes, float, str], None]
# raw body -> the payload the rules and the handler read, or InvalidPayload
PayloadParser = Callable[[bytes], Any]
# source, headers, raw body, parsed JSON (None when the body is not JSON) -> the key
KeyRule = Callable[[Source, Mapping[str, str], bytes, Any], str]
# headers, parsed payload -> the event type, or None
TypeRule = Callable[[Mapping[str, str], Any], "str | None"]
# source, the URL it will be posted to, now -> (body, headers): a harmless sample event
# of the provider's format, signed with the source's first secret, as the provider's
# own "send test webhook" button (or `stripe trigger`) would send it
TestDelivery = Callable[[Source, str, float], "tuple[bytes, dict[str, str]]"]


@dataclasses.dataclass(frozen=True)
class Scheme:
    name: str
    verify: Verifier
    event_key: KeyRule
    event_type: TypeRule
    # Decided at ingest: a verified body the handler could never read is refused
    # with 400, so the sender sees its own bug, rather than stored as a dead event.
    parse_payload: PayloadParser = None  # set in __post_init__: json_object by default
    kind: str = "payment"   # what its sources carry unless they say: one of KINDS
    trust: str = SIGNED     # one of TRUST_LEVELS; CONFIRMED is earned by the handler
    # Takes the scheme's own keys out of a source's TOML table and returns them
    # checked; a ValueError names what is wrong.
    parse_options: Callable[[dict], dict] = lambda table: {}
    test_delivery: TestDelivery = None   # required: the ops console and CLI send one
    reply: Reply | None = None           # None: Sluice's JSON (202 accepted, 200 duplicate)
    handshake: Handshake | None = None   # GET /webhooks/<source>, for senders that probe it
    # A delivery that is a batch of events each signed on its own: each is verified,
    # stored and handled alone, and a bad one refuses only itself.
    split: Splitter | None = None
    # Authenticated by a token in its URL (`/webhooks/<source>/<token>`; the token is
    # the source's secret, from `path_token_env`) for senders that can set no header
    # (M-Pesa): a missing or wrong token is answered as an unknown source.
    token_in_path: bool = False
    # False for a scheme verified without a shared secret (PayPal: its certificate)
    needs_secret: bool = True

    def __post_init__(self):
        if self.parse_payload is None:
            object.__setattr__(self, "parse_payload", json_object)
        if self.kind not in KINDS or self.trust not in (SIGNED, TOKEN):
            raise TypeError(f"scheme {self.name}: kind one of {KINDS}, trust signed or token")
        if self.split is not None and self.reply is None:
            raise TypeError(f"scheme {self.name}: a batch scheme declares its reply")
        for rule in ("verify", "event_key", "event_type", "parse_payload", "test_delivery"):
            if not callable(getattr(self, rule)):
                raise TypeError(f"scheme {self.name}: {rule} must be a rule, not "
                                f"{getattr(self, rule)!r}")


# -- payload parsers -------------------------------------------------------------------------

def json_object(body: bytes) -> dict:
    """A JSON object, or InvalidPayload: not JSON, not an object, or nested too deeply.

    Duplicate keys keep the last value (as most JSON readers do); numbers of any
    size parse, and every reader bounds what it takes from them.
    """
    try:
        payload = json.loads(body)
    except RecursionError:
        raise InvalidPayload("the JSON body is nested too deeply") from None
    except ValueError:  # also bad UTF-8, and integers past Python's digit limit
        raise InvalidPayload("the body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise InvalidPayload("the body is not a JSON object")
    return payload


# -- event-key rules -------------------------------------------------------------------------

def body_hash(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def key_by_body_hash(source, headers, body, payload) -> str:
    """For senders that resend identical bytes and carry no id: the body is the identity."""
    return body_hash(body)


def key_from_header(header: str) -> KeyRule:
    def rule(source, headers, body, payload) -> str:
        return checked_key(headers.get(header), f"the {header} header")
    return rule


def key_from_json_field(field: str) -> KeyRule:
    def rule(source, headers, body, payload) -> str:
        value = payload.get(field) if isinstance(payload, dict) else None
        return checked_key(value, f"a JSON object with a string {field!r}")
    return rule


def checked_key(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidPayload(f"the event needs {what} to identify it")
    if len(value) > MAX_EVENT_KEY:
        raise InvalidPayload(f"the event id is longer than {MAX_EVENT_KEY} characters")
    if identifier(value, MAX_EVENT_KEY) is None:
        raise InvalidPayload("the event id contains control characters or lone surrogates")
    return value


# -- event-type rules ------------------------------------------------------------------------

def type_from_json_field(field: str) -> TypeRule:
    def rule(headers: Mapping[str, str], payload: Any) -> str | None:
        # A type we cannot store as sent is not one we act on: the handler reads the
        # body again and ignores it the same way.
        return identifier(payload.get(field) if isinstance(payload, dict) else None,
                          MAX_EVENT_TYPE)
    return rule


def type_from_header(header: str) -> TypeRule:
    def rule(headers: Mapping[str, str], payload: Any) -> str | None:
        return identifier(headers.get(header), MAX_EVENT_TYPE)
    return rule


# -- source keys ------------------------------------------------------------------------------

def public_url_option(provider: str):
    """The parse_options of a scheme that signs the URL it posts to (Twilio, Square):
    the URL must be the one configured at the provider, since taken from the request
    it would come from the Host header, which the sender chooses."""
    def parse(table: dict) -> dict:
        public_url = table.pop("public_url", None)
        if not isinstance(public_url, str) or \
                urlsplit(public_url).scheme not in ("https", "http"):
            raise ValueError(f"public_url must be set to the http(s) URL configured in "
                             f"{provider} (the URL {provider} signs)")
        return {"public_url": public_url}
    return parse


# -- test deliveries -------------------------------------------------------------------------

TEST_EVENT_TYPE = "sluice.test_delivery"  # no handler acts on it: processed, no effect


def test_id(prefix: str) -> str:
    return f"{prefix}sluice_test_{secrets.token_hex(8)}"


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# -- verification helpers --------------------------------------------------------------------

def hmac_digest(key: bytes, message: bytes, algorithm=hashlib.sha256) -> bytes:
    return hmac.new(key, message, algorithm).digest()


def any_matches(expected: list[bytes], candidates: list[bytes]) -> bool:
    # Every pair is compared, so timing does not tell which secret or entry matched.
    found = False
    for digest in expected:
        for candidate in candidates:
            found |= hmac.compare_digest(digest, candidate)
    return found


def check_hmac(source, headers: Mapping[str, str], header: str, message: bytes, *,
               decode: Callable[[str], bytes | None] = None, prefix: str = "",
               algorithm=hashlib.sha256) -> None:
    """The common case: `header` carries an HMAC of `message` under one of the
    source's secrets, hex (or as `decode` reads it) after an optional `prefix`."""
    value = headers.get(header)
    if not value:
        raise MissingSignature(f"{header} header missing")
    value = value.strip()
    if not value.startswith(prefix):
        raise InvalidSignature("signature prefix missing")
    digest = (decode or unhex)(value[len(prefix):])
    expected = [hmac_digest(secret, message, algorithm) for secret in source.secrets]
    if digest is None or not any_matches(expected, [digest]):
        raise InvalidSignature("signature did not match")


def parse_timestamp(raw: str | None) -> int:
    if raw is None or not _DIGITS.match(raw):
        raise InvalidSignature("malformed timestamp")
    return int(raw)


def check_tolerance(timestamp: int, now: float, tolerance: int) -> None:
    # Unlike Stripe's own libraries, future timestamps are rejected too.
    if abs(now - timestamp) > tolerance:
        raise StaleTimestamp("timestamp outside the tolerance")


def unhex(value: str) -> bytes | None:
    try:
        return bytes.fromhex(value) if re.fullmatch(r"[0-9a-fA-F]+", value) else None
    except ValueError:
        return None


def unbase64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
