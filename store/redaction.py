"""Scrub secrets and personal data from text before it reaches a log line or the console.

Every pattern runs in time linear in its input (they see hostile text: webhook
bodies, filenames): a pattern starts only at a literal (a key word, `whsec_`, `@`
after the start of a run) or at the start of a run, and every repetition is
bounded, so no position makes the engine rescan the rest of the string. Text longer
than MAX_CHARS is cut before any pattern sees it.
"""
from __future__ import annotations

import functools
import re
from typing import Callable

REDACTED = "[redacted]"
MAX_CHARS = 64 * 1024
TRUNCATED = "…[truncated]"

# Field names whose values are never logged, whatever they look like. Matched as whole
# words of the key (snake_case, kebab-case and camelCase alike), so `span_id` is not `pan`.
_SENSITIVE_WORDS = re.compile(
    r"(?:^|_)(?:secrets?|signatures?|tokens?|password|passwd|authorization|cookies?|"
    r"set_cookie|api_?key|phones?|email|emails|card|cards|cardholder|pan|wa_id|msisdn)"
    r"(?:_|$)")
# Our own identifiers: hex and uuids that carry no personal data, and that logs must keep
# intact for correlation (a trace id's digit run is not a phone number).
OWN_IDS = frozenset({"request_id", "trace_id", "span_id", "task_id", "parent_span_id"})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NOT_WORD = re.compile(r"[^a-z0-9]+")


@functools.lru_cache(maxsize=4096)  # every log record's extras pass here; keys repeat
def sensitive_key(key: str) -> bool:
    words = _NOT_WORD.sub("_", _CAMEL.sub("_", key[:200]).lower())
    return _SENSITIVE_WORDS.search(words) is not None


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


PATTERNS: list[tuple[re.Pattern, str | Callable[[re.Match], str]]] = [
    # key=value / "key": "value" pairs whose key says what they hold. The key's own
    # prefix (client_, x-hub-) is left in place rather than matched, which would make
    # every hyphen a new start that rescans the rest of the text.
    (re.compile(r"(?i)((?:secret|signature|token|password|api[_-]?key)[\"']?\s{0,8}[:=]"
                r"\s{0,8}[\"']?)[^\s\"',;&]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)\b(bearer|basic)\s{1,8}[\w.~+/=-]+"), r"\1 " + REDACTED),
    (re.compile(r"\bwhsec_[\w+/=-]+"), REDACTED),                       # webhook secrets
    (re.compile(r"\bslc_[\w-]{16,}"), REDACTED),                        # our API tokens
    (re.compile(r"\b(?:sha1|sha256|sha512)=[0-9a-fA-F]{32,}"), REDACTED),  # Meta/GitHub sigs
    (re.compile(r"\bt=\d{1,20},\s{0,8}v\d=[0-9a-fA-F]+(?:,\s{0,8}v\d=[0-9a-fA-F]+)*"),
     REDACTED),                                                          # Stripe
    (re.compile(r"\bv1,[A-Za-z0-9+/=]{20,}"), REDACTED),                # Standard Webhooks
    # An address starts where a run of its characters starts (so a long run is tried
    # once, not from each of its characters), with RFC 5321's 64-character local part.
    (re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}"), "[email]"),
    (_CARD_CANDIDATE, _mask_card),
    (_PHONE, _mask_phone),
]


def redact(text: str) -> str:
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS] + TRUNCATED
    for pattern, replacement in PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_value(key: str, value):
    if key in OWN_IDS and isinstance(value, (str, int)):
        return value
    if sensitive_key(key):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(key, v) for v in value]
    return value
