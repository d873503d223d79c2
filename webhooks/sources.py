"""Webhook sources from a TOML file: scheme, secrets (by env var name), limits.

    [sources.stripe]
    scheme = "stripe"          # a provider's name, or a generic scheme (webhooks/schemes/)
    kind = "payment"           # payment | whatsapp | generic (default: the scheme's)
    provider = "stripe"        # payment and WhatsApp sources: which provider reads its events
    secrets_env = ["STRIPE_WEBHOOK_SECRET", "STRIPE_WEBHOOK_SECRET_PREVIOUS"]
    tolerance = 300
    rate_limit = "6000/minute"
    max_body = "4MB"
    allowed_ips = ["196.201.214.0/24"]  # optional: the sender's networks, and no others

A scheme may take keys of its own (hmac-sha256 and twilio do; see their modules).
Secret values come only from the environment, read once at load time; a source
whose variables are all unset has no secret and rejects every delivery.

A WhatsApp source fetches the media its messages carry into documents once it names
an owner (`media_owner`, an API client's name), with its provider's credentials: see
whatsapp/settings.py.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Any, Mapping

from payments.providers import PROVIDERS
from store.payloads import parse_size
from store.signatures import KINDS
from webhooks.schemes import SCHEMES
from whatsapp import PROVIDERS as WHATSAPP_PROVIDERS
from whatsapp.settings import MediaSettings, media_settings

# Who reads a kind's events; a generic event has no reader but the event log.
READERS: dict[str, Mapping[str, Any]] = {"payment": PROVIDERS, "whatsapp": WHATSAPP_PROVIDERS,
                                         "generic": {}}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class SourceConfigError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Source:
    name: str
    scheme: str
    kind: str
    provider: str                      # which provider reads its events (generic: the scheme)
    secrets: tuple[bytes, ...] = dataclasses.field(repr=False)
    tolerance: int = 300
    rate_limit: str = "6000/minute"
    max_body: int = 4 * 1024 ** 2
    verify_token: str | None = dataclasses.field(default=None, repr=False)
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the scheme's own
    media: MediaSettings | None = None  # WhatsApp sources that fetch media into documents
    secrets_env: tuple[str, ...] = ()   # the names of the variables the secrets come from
    retention_days: int | None = None   # its raw bodies' life; None: RETENTION_WEBHOOK_BODY_DAYS
    allowed_networks: tuple = ()        # allowed_ips: where deliveries may come from (any)

    @property
    def can_verify(self) -> bool:
        """A secret is set, or its scheme needs none (PayPal's certificates): without
        either, every delivery is refused."""
        return bool(self.secrets) or not SCHEMES[self.scheme].needs_secret


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
    readers = READERS[kind]
    if not readers:  # generic: verified, stored and logged, read by no provider
        if "provider" in table:
            raise SourceConfigError(f"source {name}: a generic source names no provider")
        provider = scheme.name
    else:
        provider = table.pop("provider", scheme.name if scheme.name in readers else None)
        if provider not in readers:
            raise SourceConfigError(f"source {name}: a {kind} source needs provider = one "
                                    f"of {', '.join(readers)}")
    # a scheme authenticated by a token in its URL takes it as its secret
    secret_vars = table.pop("path_token_env" if scheme.token_in_path else "secrets_env", [])
    if isinstance(secret_vars, str):
        secret_vars = [secret_vars]
    secrets = tuple(environ[var].encode("utf-8") for var in secret_vars if environ.get(var))
    verify_var = table.pop("verify_token_env", None)
    try:
        fields = {
            "tolerance": int(table.pop("tolerance", 300)),
            "rate_limit": str(table.pop("rate_limit", "6000/minute")),
            "max_body": parse_size(table.pop("max_body", "4MB")),
            "retention_days": _retention_days(table.pop("retention_days", None)),
            "allowed_networks": _networks(table.pop("allowed_ips", None)),
            "verify_token": environ.get(verify_var) if verify_var else None,
            "options": scheme.parse_options(table),
            "media": (media_settings(table, WHATSAPP_PROVIDERS[provider], secrets, environ)
                      if kind == "whatsapp" else None),
        }
    except ValueError as exc:
        raise SourceConfigError(f"source {name}: {exc}") from None
    if table:
        raise SourceConfigError(f"source {name}: unknown keys {', '.join(sorted(table))}")
    return Source(name=name, scheme=scheme.name, kind=kind, provider=provider,
                  secrets=secrets, secrets_env=tuple(secret_vars), **fields)


def _networks(value: Any) -> tuple:
    if value is None:
        return ()
    if not _strings(value) or not value:
        raise ValueError("allowed_ips must be a list of CIDRs (e.g. [\"196.201.214.0/24\"])")
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in value)  # names a bad one


def _retention_days(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("retention_days must be a whole number of days, 1 or more")
    return value


def configured(config: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Source]:
    """The sources a process runs with: inline under WEBHOOK_SOURCES (tests), else the
    sources file. SourceConfigError for one that cannot work."""
    inline = config.get("WEBHOOK_SOURCES")
    if inline is not None:
        return load_sources(inline, environ)
    return load_sources_file(config["SLUICE_SOURCES_FILE"], environ)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)
