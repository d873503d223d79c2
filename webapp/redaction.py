"""Scrub secrets and personal data from text before it reaches a log line."""
from __future__ import annotations

import re

REDACTED = "[redacted]"

# Field names whose values are never logged, whatever they look like.
SENSITIVE_KEYS = re.compile(
    r"secret|signature|token|password|passwd|authorization|cookie|api[_-]?key|"
    r"phone|email|card|pan|wa_id|msisdn",
    re.IGNORECASE)

_PATTERNS: list[tuple[re.Pattern, str]] = [
    # key=value / "key": "value" pairs whose key says what they hold.
    (re.compile(r"(?i)\b((?:[\w-]*(?:secret|signature|token|password|api[_-]?key))"
                r"[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)\b(bearer|basic)\s+[\w.~+/=-]+"), r"\1 " + REDACTED),
    (re.compile(r"\bwhsec_[\w+/=-]+"), REDACTED),                       # webhook secrets
    (re.compile(r"\bslc_[\w-]{16,}"), REDACTED),                        # our API tokens
    (re.compile(r"\b(?:sha1|sha256|sha512)=[0-9a-fA-F]{32,}"), REDACTED),  # Meta/GitHub sigs
    (re.compile(r"\bt=\d+,\s*v\d=[0-9a-fA-F]+(?:,\s*v\d=[0-9a-fA-F]+)*"), REDACTED),  # Stripe
    (re.compile(r"\bv1,[A-Za-z0-9+/=]{20,}"), REDACTED),                # Standard Webhooks
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "[email]"),
]

_CARD_CANDIDATE = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")
# International numbers with a +, and bare 11-15 digit runs (WhatsApp wa_id, MSISDN).
_PHONE = re.compile(r"\+\d(?:[\s().-]{0,2}\d){6,14}(?!\d)|(?<![\d.])\d{11,15}(?![\d.])")


def _luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _mask_card(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "[card]" if _luhn_valid(digits) else match.group()


def _mask_phone(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match.group())
    return f"[phone ..{digits[-2:]}]"


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    text = _CARD_CANDIDATE.sub(_mask_card, text)
    return _PHONE.sub(_mask_phone, text)


def redact_value(key: str, value):
    if SENSITIVE_KEYS.search(key):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(key, v) for v in value]
    return value
