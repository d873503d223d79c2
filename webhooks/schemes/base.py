"""What a signature scheme declares, and the pieces its rules are built from.

A scheme module declares one `Scheme`: how to verify a delivery over its raw
bytes, where its event key comes from, and where its event type comes from. There
is no fallback: a scheme without an event-key rule cannot be declared.

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
from typing import TYPE_CHECKING, Any, Callable, Mapping

from store.payloads import identifier

if TYPE_CHECKING:
    from webhooks.sources import Source

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


class InvalidPayload(ValueError):
    """A verified delivery that can never be stored or handled: 400, nothing stored."""
    code = "invalid_payload"


# source, headers, raw body, now, the full URL requested -> None or a SignatureError
Verifier = Callable[["Source", Mapping[str, str], bytes, float, str], None]
# raw body -> the payload the rules and the handler read, or InvalidPayload
PayloadParser = Callable[[bytes], Any]
# source, headers, raw body, parsed JSON (None when the body is not JSON) -> the key
KeyRule = Callable[["Source", Mapping[str, str], bytes, Any], str]
TypeRule = Callable[[Any], "str | None"]
# source, the URL it will be posted to, now -> (body, headers): a harmless sample event
# of the provider's format, signed with the source's first secret, as the provider's
# own "send test webhook" button (or `stripe trigger`) would send it
TestDelivery = Callable[["Source", str, float], "tuple[bytes, dict[str, str]]"]


@dataclasses.dataclass(frozen=True)
class Scheme:
    name: str
    verify: Verifier
    event_key: KeyRule
    event_type: TypeRule
    # Decided at ingest: a verified body the handler could never read is refused
    # with 400, so the sender sees its own bug, rather than stored as a dead event.
    parse_payload: PayloadParser = None  # set in __post_init__: json_object by default
    kind: str = "payment"   # what its sources carry unless they say: payment | whatsapp
    # Takes the scheme's own keys out of a source's TOML table and returns them
    # checked; a ValueError names what is wrong.
    parse_options: Callable[[dict], dict] = lambda table: {}
    test_delivery: TestDelivery = None   # required: the ops console and CLI send one

    def __post_init__(self):
        if self.parse_payload is None:
            object.__setattr__(self, "parse_payload", json_object)
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
    def rule(payload: Any) -> str | None:
        # A type we cannot store as sent is not one we act on: the handler reads the
        # body again and ignores it the same way.
        return identifier(payload.get(field) if isinstance(payload, dict) else None,
                          MAX_EVENT_TYPE)
    return rule


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
