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
an owner (`media_owner`, an API client's name); then it needs its credentials:

    media_owner = "whatsapp-inbox"
    access_token_env = "WHATSAPP_ACCESS_TOKEN"   # Meta: the Graph API token
    account_sid_env = "TWILIO_ACCOUNT_SID"       # Twilio: with the auth token (secrets_env)
    graph_api_base = "https://graph.facebook.com/v21.0"
    media_allowed_hosts = ["fbsbx.com"]          # default: the provider's CDN hosts
    media_allow_http = false                     # and media_allowed_networks = [] (CIDRs):
    media_concurrency = 4                        # the only ways to a plain-http or
    media_max_bytes = { image = "5MB" }          # non-public address (tests, not production)
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Any, Mapping

from payments.providers import PROVIDERS
from store.signatures import KINDS
from webhooks.schemes import SCHEMES
from webhooks.whatsapp import PROVIDERS as WHATSAPP_PROVIDERS

# Who reads a kind's events; a generic event has no reader but the event log.
READERS: dict[str, Mapping[str, Any]] = {"payment": PROVIDERS, "whatsapp": WHATSAPP_PROVIDERS,
                                         "generic": {}}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|MB|GB)?\s*$", re.IGNORECASE)
_UNITS = {None: 1, "B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}


class SourceConfigError(ValueError):
    pass


# What Meta and Twilio may send, by kind; a source's media_max_bytes changes any of them.
MEDIA_MAX_BYTES = {"image": 5 * 1024 ** 2, "document": 100 * 1024 ** 2,
                   "audio": 16 * 1024 ** 2, "video": 16 * 1024 ** 2, "sticker": 500 * 1024}
MEDIA_KEYS = ("media_owner", "access_token_env", "account_sid_env", "graph_api_base",
              "media_allowed_hosts", "media_allow_http", "media_allowed_networks",
              "media_max_bytes", "media_concurrency")


@dataclasses.dataclass(frozen=True)
class MediaSettings:
    """How a WhatsApp source's media reach the document pipeline."""
    owner: str                                  # the API client that owns the documents
    token: str = dataclasses.field(repr=False)  # Meta's Graph token, or Twilio's auth token
    account_sid: str | None = None              # Twilio's basic-auth user
    graph_api_base: str = "https://graph.facebook.com/v21.0"
    allowed_hosts: tuple[str, ...] = ()
    allow_http: bool = False
    allowed_networks: tuple[str, ...] = ()
    max_bytes: Mapping[str, int] = dataclasses.field(default_factory=lambda: MEDIA_MAX_BYTES)
    concurrency: int = 4


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
            "media": (_media_settings(table, provider, secrets, environ)
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


def _media_settings(table: dict[str, Any], provider: str, secrets: tuple[bytes, ...],
                    environ: Mapping[str, str]) -> MediaSettings | None:
    """None when the source fetches no media (no media key at all); ValueError for
    settings that cannot fetch: no owner, no credentials, a bad host or network."""
    given = {key: table.pop(key) for key in MEDIA_KEYS if key in table}
    if not given:
        return None
    owner = given.get("media_owner")
    if not isinstance(owner, str) or not owner:
        raise ValueError("media fetching needs media_owner, the name of the API client "
                         "that owns the documents")
    account_sid = None
    if provider == "twilio":
        account_sid = environ.get(given.get("account_sid_env") or "")
        if not account_sid or not secrets:
            raise ValueError("Twilio media fetching needs account_sid_env set to a variable "
                             "holding the account SID, and the auth token in secrets_env")
        token = secrets[0].decode()
    else:
        token = environ.get(given.get("access_token_env") or "")
        if not token:
            raise ValueError("media fetching needs access_token_env set to a variable "
                             "holding the Graph API access token")
    hosts = given.get("media_allowed_hosts", list(WHATSAPP_PROVIDERS[provider].media_hosts))
    networks = given.get("media_allowed_networks", [])
    graph = given.get("graph_api_base", MediaSettings.graph_api_base)
    allow_http = given.get("media_allow_http", False)
    if not _strings(hosts) or not all(hosts):
        raise ValueError("media_allowed_hosts must be a list of host names")
    if not _strings(networks):
        raise ValueError("media_allowed_networks must be a list of CIDRs")
    for network in networks:
        ipaddress.ip_network(network, strict=False)  # ValueError names it
    if not isinstance(allow_http, bool):
        raise ValueError("media_allow_http must be true or false")
    if not isinstance(graph, str) or not re.match(r"^https?://[^/]+", graph) or \
            (graph.startswith("http:") and not allow_http):
        raise ValueError("graph_api_base must be an https URL (http only with media_allow_http)")
    caps = given.get("media_max_bytes", {})
    if not isinstance(caps, Mapping) or set(caps) - set(MEDIA_MAX_BYTES):
        raise ValueError(f"media_max_bytes takes {', '.join(MEDIA_MAX_BYTES)}")
    concurrency = given.get("media_concurrency", 4)
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ValueError("media_concurrency must be a whole number, 1 or more")
    return MediaSettings(
        owner=owner, token=token, account_sid=account_sid, graph_api_base=graph,
        allowed_hosts=tuple(h.lower().strip(".") for h in hosts), allow_http=allow_http,
        allowed_networks=tuple(networks), concurrency=concurrency,
        max_bytes={**MEDIA_MAX_BYTES, **{k: parse_size(v) for k, v in caps.items()}})


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)
