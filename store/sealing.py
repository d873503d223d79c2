"""Personal data sealed at rest: authenticated encryption under rotating keys, applied by
the column types themselves, and keyed blind indexes to find a person without decrypting.

A database dump or a backup then holds no phone number, message text, webhook body,
event payload or signing secret in clear.

- DATA_KEYS is `id:key,id:key`, each key 32 random bytes in urlsafe base64 (what
  `Fernet.generate_key()` prints). The first seals; every listed key opens.
- A sealed value is `sl1:<key id>:<Fernet token>` (Fernet: AES-128-CBC with an
  HMAC-SHA256 over it, from `cryptography`), so each value names its key: `flask keys
  status` counts them per key and `flask keys rotate` reseals those under any other.
- A value without the prefix was written before sealing existed and is read as it is;
  `keys rotate` seals it.
- INDEX_KEY (same format, one key) keys an HMAC-SHA256 over an identifier's normal
  form (a phone's digits, a lower-cased email): equal people, equal index, and nothing
  to read back.

The ring is installed once per process (create_app), as the column types cannot reach
an app's configuration; a process that reads a sealed column without one fails loudly.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import re
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import LargeBinary, Text, func, select, type_coerce, update
from sqlalchemy.types import TypeDecorator

PREFIX = "sl1:"
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,16}")


class SealingError(ValueError):
    """A DATA_KEYS or INDEX_KEY value that cannot be used; the message names what."""


def _key_bytes(name: str, key_id: str, text: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raw = b""
    if len(raw) != 32:
        raise SealingError(f"{name}: key {key_id!r} is not 32 bytes in urlsafe base64 "
                           "(generate one with: python -c 'from cryptography.fernet import "
                           "Fernet; print(Fernet.generate_key().decode())')")
    return raw


@dataclasses.dataclass(frozen=True)
class KeyRing:
    """The data keys, the first of which seals."""

    ids: tuple[str, ...]
    fernets: tuple[Fernet, ...] = dataclasses.field(repr=False)

    @classmethod
    def parse(cls, value: str, name: str = "DATA_KEYS") -> "KeyRing":
        ids, fernets = [], []
        for entry in (part.strip() for part in value.split(",")):
            key_id, sep, key = entry.partition(":")
            if not sep or not _KEY_ID.fullmatch(key_id):
                raise SealingError(f"{name}: each entry is id:key, the id 1-16 of A-Z a-z 0-9 _ -")
            if key_id in ids:
                raise SealingError(f"{name}: key id {key_id!r} is listed twice")
            _key_bytes(name, key_id, key)
            ids.append(key_id)
            fernets.append(Fernet(key.encode("ascii")))
        return cls(tuple(ids), tuple(fernets))

    @property
    def primary(self) -> str:
        return self.ids[0]

    def seal(self, plain: bytes) -> str:
        return f"{PREFIX}{self.ids[0]}:{self.fernets[0].encrypt(plain).decode('ascii')}"

    def open(self, stored: str) -> bytes:
        """The plaintext of a sealed value; a value without the prefix as it is."""
        if not stored.startswith(PREFIX):
            return stored.encode("utf-8")
        key_id, _, token = stored[len(PREFIX):].partition(":")
        try:
            fernet = self.fernets[self.ids.index(key_id)]
        except ValueError:
            raise SealingError(f"a value is sealed under key {key_id!r}, which DATA_KEYS "
                               "does not list") from None
        try:
            return fernet.decrypt(token.encode("ascii"))
        except InvalidToken:
            raise SealingError(f"a value sealed under key {key_id!r} does not open: it was "
                               "altered, or the key is not the one it was sealed with") from None


def key_id_of(stored: str | bytes | None) -> str | None:
    """The id of the key a stored value is sealed under; None if it is not sealed."""
    if isinstance(stored, bytes):
        stored = stored[:40].decode("ascii", "replace")
    if not stored or not stored.startswith(PREFIX):
        return None
    return stored[len(PREFIX):].partition(":")[0]


_ring: KeyRing | None = None
_index_key: bytes | None = None


def install(ring: KeyRing, index_key: bytes) -> None:
    """This process's keys (create_app calls it with DATA_KEYS and INDEX_KEY)."""
    global _ring, _index_key
    _ring, _index_key = ring, index_key


def ring() -> KeyRing:
    if _ring is None:
        raise RuntimeError("no data keys installed: build the app (create_app) first")
    return _ring


def parse_index_key(value: str) -> bytes:
    return _key_bytes("INDEX_KEY", "INDEX_KEY", value.strip())


# --- column types --------------------------------------------------------------------

class SealedText(TypeDecorator):
    """Text sealed at rest; Python sees the plaintext."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else ring().seal(value.encode("utf-8"))

    def process_result_value(self, value, dialect):
        return None if value is None else ring().open(value).decode("utf-8")


class SealedBytes(TypeDecorator):
    """Bytes sealed at rest (a webhook's raw body); stored as the sealed text's bytes."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else ring().seal(bytes(value)).encode("ascii")

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        value = bytes(value)
        if not value.startswith(PREFIX.encode()):
            return value  # written before sealing
        return ring().open(value.decode("ascii"))


class SealedJSON(TypeDecorator):
    """A JSON document sealed at rest (an event's data)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return ring().seal(json.dumps(value, separators=(",", ":")).encode("utf-8"))

    def process_result_value(self, value, dialect):
        return None if value is None else json.loads(ring().open(value))


# --- blind indexes -------------------------------------------------------------------

def normal_phone(value: str) -> str:
    """A phone number's E.164 digits: `+44 7700 900123`, `whatsapp:+447700900123`,
    `0044 7700 900123` and `447700900123` are all `447700900123`."""
    digits = re.sub(r"[^0-9]", "", value)  # ASCII digits: what a phone number is dialled with
    return digits[2:] if digits.startswith("00") else digits


def normal_email(value: str) -> str:
    return value.strip().lower()


NORMAL_FORMS = {"phone": normal_phone, "email": normal_email,
                "customer": lambda value: value.strip()}


def blind_index(kind: str, value: str | None) -> str | None:
    """HMAC-SHA256 under INDEX_KEY of `value`'s normal form (hex); None for nothing."""
    if value is None:
        return None
    normal = NORMAL_FORMS[kind](value)
    if not normal:
        return None
    if _index_key is None:
        raise RuntimeError("no index key installed: build the app (create_app) first")
    return hmac.new(_index_key, f"{kind}:{normal}".encode("utf-8"), hashlib.sha256).hexdigest()


def sealed_columns(metadata) -> list[tuple[Any, Any]]:
    """(table, column) for every sealed column in `metadata`: what `keys` works through."""
    return [(table, column) for table in metadata.sorted_tables for column in table.columns
            if isinstance(column.type, (SealedText, SealedBytes, SealedJSON))]


# --- rotation ------------------------------------------------------------------------

def raw_column(column):
    """The column as stored, past its type's sealing."""
    return type_coerce(column, column.type.impl)


def _label(table, column) -> str:
    return f"{table.name}.{column.name}"


def key_counts(session, metadata) -> dict[str, dict[str, int]]:
    """{table.column: {key id, or "plaintext": how many values}} over every sealed
    column: which keys still have values, so an operator knows when one may go."""
    found: dict[str, dict[str, int]] = {}
    for table, column in sealed_columns(metadata):
        counts: dict[str, int] = {}
        prefix = func.substr(raw_column(column), 1, 24)
        for head, count in session.execute(
                select(prefix, func.count()).where(column.is_not(None)).group_by(prefix)):
            key_id = key_id_of(head) or "plaintext"
            counts[key_id] = counts.get(key_id, 0) + count
        found[_label(table, column)] = counts
    return found


def _plain(keys: KeyRing, column_type, stored):
    """A stored value's plaintext, in the form its column type takes."""
    if isinstance(column_type, SealedBytes):
        stored = bytes(stored)
        return keys.open(stored.decode("ascii")) if stored.startswith(PREFIX.encode()) \
            else stored
    plain = keys.open(stored)
    return json.loads(plain) if isinstance(column_type, SealedJSON) else plain.decode("utf-8")


def rotate(session, metadata, batch: int = 500, progress=None) -> dict[str, int]:
    """Reseal every value not under the first key (plaintext from before sealing too),
    in batches of `batch`, each committed: safe to stop and run again, and a second run
    finds nothing to do. {table.column: values resealed}."""
    keys = ring()
    done: dict[str, int] = {}
    for table, column in sealed_columns(metadata):
        is_bytes = isinstance(column.type, SealedBytes)
        current = f"{PREFIX}{keys.primary}:"
        current = current.encode("ascii") if is_bytes else current
        raw, resealed, after = raw_column(column), 0, 0
        (key,) = table.primary_key.columns  # one column: `id`, or document_texts' document_id
        while True:
            rows = session.execute(
                select(key, raw).where(
                    column.is_not(None), key > after,
                    func.substr(raw, 1, len(current)) != current)
                .order_by(key).limit(batch)).all()
            if not rows:
                break
            for row_id, stored in rows:
                value = _plain(keys, column.type, stored)
                session.execute(update(table).where(key == row_id)
                                .values({column.name: value}))
            session.commit()
            resealed += len(rows)
            after = rows[-1][0]
            if progress:
                progress(_label(table, column), resealed)
        done[_label(table, column)] = resealed
    return done
