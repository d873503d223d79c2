"""Webhook sources from a TOML file: scheme, secrets (by env var name), limits.

    [sources.stripe]
    scheme = "stripe"          # a name in webhooks/schemes/__init__.py
    kind = "payment"           # payment | whatsapp (default: the scheme's)
    provider = "stripe"        # payment sources: a name in payments/providers/
    secrets_env = ["STRIPE_WEBHOOK_SECRET", "STRIPE_WEBHOOK_SECRET_PREVIOUS"]
    tolerance = 300
    rate_limit = "6000/minute"
    max_body = "4MB"

A scheme may take keys of its own (hmac-sha256 does; see its module). Secret
values come only from the environment, read once at load time; a source whose
variables are all unset has no secret and rejects every delivery.
"""
from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any, Mapping

from payments.providers import PROVIDERS
from webhooks.schemes import SCHEMES

KINDS = ("payment", "whatsapp")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|MB|GB)?\s*$", re.IGNORECASE)
_UNITS = {None: 1, "B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}


class SourceConfigError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Source:
    name: str
    scheme: str
    kind: str
    provider: str                      # payment sources: which provider reads its events
    secrets: tuple[bytes, ...] = dataclasses.field(repr=False)
    tolerance: int = 300
    rate_limit: str = "6000/minute"
    max_body: int = 4 * 1024 ** 2
    verify_token: str | None = dataclasses.field(default=None, repr=False)
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the scheme's own


def parse_size(value: Any) -> int:
    if isinstance(value, int) and value > 0:
        return value
    match = _SIZE.match(str(value))
    if not match or int(match.group(1)) <= 0:
        raise SourceConfigError(f"not a size: {value!r} (say e.g. 4MB)")
    return int(match.group(1)) * _UNITS[match.group(2) and match.group(2).upper()]


def load_sources(document: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Source]:
    """Build sources from a parsed TOML document and the environment."""
    sources = {}
    for name, table in (document.get("sources") or {}).items():
        if not isinstance(table, Mapping):
            raise SourceConfigError(f"source {name}: expected a table of settings")
        sources[name] = _build(name, dict(table), environ)
    return sources


def load_sources_file(path: str | Path, environ: Mapping[str, str]) -> dict[str, Source]:
    path = Path(path)
    if not path.exists():
        return {}
    with path.open("rb") as handle:
        try:
            document = tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise SourceConfigError(f"{path}: {exc}") from None
    try:
        return load_sources(document, environ)
    except SourceConfigError as exc:
        raise SourceConfigError(f"{path}: {exc}") from None


def _build(name: str, table: dict[str, Any], environ: Mapping[str, str]) -> Source:
    if not _NAME.match(name):
        raise SourceConfigError(f"source name {name!r}: use a-z, 0-9, '-' and '_'")
    scheme = SCHEMES.get(table.pop("scheme", None))
    if scheme is None:
        raise SourceConfigError(f"source {name}: scheme must be one of {', '.join(SCHEMES)}")
    kind = table.pop("kind", scheme.kind)
    if kind not in KINDS:
        raise SourceConfigError(f"source {name}: kind must be one of {', '.join(KINDS)}")
    provider = table.pop("provider", scheme.name if scheme.name in PROVIDERS else None)
    if kind == "payment" and provider not in PROVIDERS:
        raise SourceConfigError(f"source {name}: a payment source needs provider = one of "
                                f"{', '.join(PROVIDERS)}")
    secret_vars = table.pop("secrets_env", [])
    if isinstance(secret_vars, str):
        secret_vars = [secret_vars]
    secrets = tuple(environ[var].encode("utf-8") for var in secret_vars if environ.get(var))
    verify_var = table.pop("verify_token_env", None)
    try:
        fields = {
            "tolerance": int(table.pop("tolerance", 300)),
            "rate_limit": str(table.pop("rate_limit", "6000/minute")),
            "max_body": parse_size(table.pop("max_body", "4MB")),
            "verify_token": environ.get(verify_var) if verify_var else None,
            "options": scheme.parse_options(table),
        }
    except ValueError as exc:
        raise SourceConfigError(f"source {name}: {exc}") from None
    if table:
        raise SourceConfigError(f"source {name}: unknown keys {', '.join(sorted(table))}")
    return Source(name=name, scheme=scheme.name, kind=kind, provider=provider or name,
                  secrets=secrets, **fields)
