"""Where Sluice may connect on someone else's say-so: the URL and address rules of
store/fetch.py, without the HTTP client (the web checks a destination's URL with
them, and must not load requests).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
from urllib.parse import urlsplit

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters on which URL parsers disagree, or that no URL from a provider carries.
_AMBIGUOUS = re.compile(r"[\x00-\x20\x7f\\]")
# A DNS name as it goes on the wire: letters, digits and hyphens in dot-separated labels.
_DNS_NAME = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*"
                       r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


class FetchRefused(Exception):
    """We will not fetch this (a policy said no); `code` says which rule."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class FetchFailed(Exception):
    """The other side failed (unreachable, timed out, an HTTP error); maybe retry.
    `status` is the HTTP status when there was one, `retry_after` its Retry-After."""

    def __init__(self, message: str, status: int | None = None,
                 retry_after: float | None = None):
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


@dataclasses.dataclass(frozen=True)
class Origin:
    scheme: str
    host: str           # lower case, without a trailing dot; an IPv6 literal in brackets
    port: int | None


def origin_of(url: str) -> Origin:
    """Where urllib3 will connect for `url`, or FetchRefused if that is in any doubt."""
    if not url.isascii() or _AMBIGUOUS.search(url) or "%" in urlsplit(url).netloc:
        # urllib3 decodes percent-escapes in a host; no provider sends one
        raise FetchRefused("url_refused", "the URL has characters that are not allowed")
    try:
        parsed = parse_url(url)
    except (LocationParseError, ValueError):
        raise FetchRefused("url_refused", "the URL cannot be parsed") from None
    if parsed.auth is not None:
        raise FetchRefused("url_refused", "URLs with credentials are not fetched")
    scheme, host = (parsed.scheme or "").lower(), (parsed.host or "").lower()
    if not _is_ip_literal(host):
        host = host.removesuffix(".")
        if len(host) > 253 or not _DNS_NAME.fullmatch(host):
            raise FetchRefused("url_refused", "the URL's host is not a DNS name or an address")
    return Origin(scheme, host, parsed.port or DEFAULT_PORTS.get(scheme))


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host[1:-1] if host.startswith("[") and host.endswith("]")
                             else host)
    except ValueError:
        return False
    return True


@dataclasses.dataclass(frozen=True)
class FetchPolicy:
    # host suffixes: "fbsbx.com" allows "a.fbsbx.com"; None: any host (a destination the
    # operator named), the address checks still apply
    allowed_hosts: tuple[str, ...] | None
    allow_http: bool = False
    allowed_networks: tuple[str, ...] = ()   # CIDRs reachable although not global
    connect_timeout: float = 5.0
    read_timeout: float = 30.0

    def check_url(self, url: str) -> Origin:
        """The URL's origin, if the policy allows it; FetchRefused otherwise."""
        origin = origin_of(url)
        if origin.scheme not in (("https", "http") if self.allow_http else ("https",)):
            raise FetchRefused("scheme_refused", f"{origin.scheme or 'no'} scheme is not allowed")
        host = origin.host
        if not host:
            raise FetchRefused("host_refused", "the URL has no host")
        if self.allowed_hosts is not None and not any(
                host == suffix or (host.endswith("." + suffix) and not _is_ip_literal(host)
                                   and not _is_ip_literal(suffix))
                for suffix in self.allowed_hosts):
            raise FetchRefused("host_refused", "the URL's host is not in the allowlist")
        return origin

    def check_address(self, address: str) -> None:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if any(ip in ipaddress.ip_network(net, strict=False) for net in self.allowed_networks):
            return
        if not ip.is_global or ip.is_multicast:
            raise FetchRefused("address_refused",
                               "the host resolves to an address that is not public")
