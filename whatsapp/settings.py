"""A WhatsApp source's media settings: what every provider's media take (the owner,
hosts, networks, caps, concurrency), and the credentials each provider reads from keys
of its own (`WhatsAppProvider.media_keys` and `media_credentials`).

    media_owner = "whatsapp-inbox"
    media_allowed_hosts = ["fbsbx.com"]          # default: the provider's CDN hosts
    media_allow_http = false                     # and media_allowed_networks = [] (CIDRs):
    media_concurrency = 4                        # the only ways to a plain-http or
    media_max_bytes = { image = "5MB" }          # non-public address (tests, not production)

plus the provider's own: Meta's `access_token_env` and `graph_api_base`, Twilio's
`account_sid_env` (with its auth token, the source's secret).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Any, Mapping

from store.payloads import parse_size

# What Meta and Twilio may send, by kind; a source's media_max_bytes changes any of them.
MEDIA_MAX_BYTES = {"image": 5 * 1024 ** 2, "document": 100 * 1024 ** 2,
                   "audio": 16 * 1024 ** 2, "video": 16 * 1024 ** 2, "sticker": 500 * 1024}
MEDIA_KEYS = ("media_owner", "media_allowed_hosts", "media_allow_http",
              "media_allowed_networks", "media_max_bytes", "media_concurrency")


@dataclasses.dataclass(frozen=True)
class MediaCredentials:
    """What a provider's locator signs in with, read from the source's keys."""
    token: str = dataclasses.field(repr=False)  # Meta's Graph token, or Twilio's auth token
    account_sid: str | None = None              # Twilio's basic-auth user
    api_base: str = ""                          # where its API answers (Meta's Graph API)


@dataclasses.dataclass(frozen=True)
class MediaSettings:
    """How a WhatsApp source's media reach the document pipeline."""
    owner: str                                  # the API client that owns the documents
    credentials: MediaCredentials
    allowed_hosts: tuple[str, ...] = ()
    allow_http: bool = False
    allowed_networks: tuple[str, ...] = ()
    max_bytes: Mapping[str, int] = dataclasses.field(default_factory=lambda: MEDIA_MAX_BYTES)
    concurrency: int = 4


def api_base(value: Any, allow_http: bool, key: str) -> str:
    """A provider API's base URL from a source key: https, or http with media_allow_http."""
    if not isinstance(value, str) or not re.match(r"^https?://[^/]+", value) or \
            (value.startswith("http:") and not allow_http):
        raise ValueError(f"{key} must be an https URL (http only with media_allow_http)")
    return value.rstrip("/")


def media_settings(table: dict[str, Any], provider, secrets: tuple[bytes, ...],
                   environ: Mapping[str, str]) -> MediaSettings | None:
    """None when the source fetches no media (no media key at all); ValueError for
    settings that cannot fetch: no owner, no credentials, a bad host or network.
    `provider` is the source's WhatsAppProvider."""
    given = {key: table.pop(key) for key in (*MEDIA_KEYS, *provider.media_keys)
             if key in table}
    if not given:
        return None
    owner = given.get("media_owner")
    if not isinstance(owner, str) or not owner:
        raise ValueError("media fetching needs media_owner, the name of the API client "
                         "that owns the documents")
    hosts = given.get("media_allowed_hosts", list(provider.media_hosts))
    networks = given.get("media_allowed_networks", [])
    allow_http = given.get("media_allow_http", False)
    if not _strings(hosts) or not all(hosts):
        raise ValueError("media_allowed_hosts must be a list of host names")
    if not _strings(networks):
        raise ValueError("media_allowed_networks must be a list of CIDRs")
    for network in networks:
        ipaddress.ip_network(network, strict=False)  # ValueError names it
    if not isinstance(allow_http, bool):
        raise ValueError("media_allow_http must be true or false")
    caps = given.get("media_max_bytes", {})
    if not isinstance(caps, Mapping) or set(caps) - set(MEDIA_MAX_BYTES):
        raise ValueError(f"media_max_bytes takes {', '.join(MEDIA_MAX_BYTES)}")
    concurrency = given.get("media_concurrency", 4)
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ValueError("media_concurrency must be a whole number, 1 or more")
    return MediaSettings(
        owner=owner, credentials=provider.media_credentials(given, secrets, environ),
        allowed_hosts=tuple(h.lower().strip(".") for h in hosts), allow_http=allow_http,
        allowed_networks=tuple(networks), concurrency=concurrency,
        max_bytes={**MEDIA_MAX_BYTES, **{k: parse_size(v) for k, v in caps.items()}})


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)
