"""Fetch a file from a URL someone else gave us, as hostile input.

Used for WhatsApp media: the provider's API hands us a URL, and the bytes behind it
are treated exactly like an upload's, with more checks on the way in:

- https only, unless the policy allows plain http;
- one parser decides the host: urllib3's `parse_url`, the one requests and urllib3
  connect with, run on the URL requests actually prepared. A URL that parsers read
  differently (a backslash, whitespace or a control character, userinfo, anything
  but ASCII, a host that is not a plain DNS name or IP literal) is refused before
  any connection, since `http://evil\\.fbcdn.net/` is host `evil\\.fbcdn.net` to
  `urlsplit` and `evil` to urllib3;
- the host must end with one of the policy's allowed suffixes, on every redirect too
  (at most a few, each checked); credentials go only to the first URL's exact origin
  (scheme, host and port), never to another port or host a redirect names;
- the address actually connected to, after DNS, is checked on the open socket, so a
  name that resolves (or re-resolves) to a loopback, private, link-local, metadata or
  other non-global address is refused unless the operator allowed its network;
- connect and read timeouts, and a byte cap counted while reading, whatever size the
  provider reported.

requests and urllib3 do the HTTP; the one hook is the connection class, which checks
the peer address before a byte is sent (urllib3 has no option for it).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Iterator, Mapping
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

REDIRECTS = {301, 302, 303, 307, 308}
MAX_REDIRECTS = 3
CHUNK = 64 * 1024
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
    allowed_hosts: tuple[str, ...]           # host suffixes: "fbsbx.com" allows "a.fbsbx.com"
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
        if not host or not any(host == suffix or (host.endswith("." + suffix)
                                                  and not _is_ip_literal(host)
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


def _guarded(connection_class, policy: FetchPolicy):
    class Guarded(connection_class):
        def _new_conn(self):
            sock = super()._new_conn()
            try:
                policy.check_address(sock.getpeername()[0])
            except BaseException:
                sock.close()
                raise
            return sock
    return Guarded


class GuardedAdapter(HTTPAdapter):
    """Every connection's peer address passes the policy before anything is sent."""

    def __init__(self, policy: FetchPolicy):
        self.policy = policy
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        http = type("GuardedHTTPPool", (HTTPConnectionPool,),
                    {"ConnectionCls": _guarded(HTTPConnection, self.policy)})
        https = type("GuardedHTTPSPool", (HTTPSConnectionPool,),
                     {"ConnectionCls": _guarded(HTTPSConnection, self.policy)})
        self.poolmanager.pool_classes_by_scheme = {"http": http, "https": https}


def session_for(policy: FetchPolicy) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment can reroute around the policy
    adapter = GuardedAdapter(policy)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@dataclasses.dataclass
class Response:
    status: int
    headers: Mapping[str, str]
    url: str
    _raw: requests.Response

    def json(self):
        try:
            return self._raw.json()
        except ValueError:
            raise FetchFailed("the answer is not JSON", self.status) from None

    def iter_bytes(self, cap: int) -> Iterator[bytes]:
        """The body in chunks; FetchRefused past `cap` bytes (nothing more is read)."""
        seen = 0
        try:
            for chunk in self._raw.iter_content(CHUNK):
                seen += len(chunk)
                if seen > cap:
                    raise FetchRefused("too_large", f"the file exceeds {cap} bytes")
                yield chunk
        except requests.RequestException as exc:
            raise FetchFailed(f"reading the body failed ({type(exc).__name__})") from None
        finally:
            self._raw.close()

    def close(self) -> None:
        self._raw.close()


def get(session: requests.Session, policy: FetchPolicy, url: str,
        headers: Mapping[str, str] | None = None, auth=None) -> Response:
    """GET `url` under `policy`, following allowed redirects; the body is not read yet.

    Credentials (headers, auth) go to the first URL's exact origin only, never to
    another host or port a redirect points at. FetchRefused for a policy breach,
    FetchFailed when the other side fails; any status is returned, for the caller
    to judge.
    """
    first = None
    for _ in range(MAX_REDIRECTS + 1):
        here = policy.check_url(url)
        first = first or here
        same_origin = here == first
        prepared = session.prepare_request(requests.Request(
            "GET", url, headers=dict(headers or {}) if same_origin else {},
            auth=auth if same_origin else None))
        if policy.check_url(prepared.url) != here:  # what is sent is what was checked
            raise FetchRefused("url_refused", "the URL changes when prepared")
        try:
            answer = session.send(prepared, stream=True, allow_redirects=False,
                                  timeout=(policy.connect_timeout, policy.read_timeout))
        except requests.ConnectionError as exc:
            refused = _refusal(exc)
            if refused is not None:
                raise refused from None
            raise FetchFailed(f"could not connect ({type(exc).__name__})") from None
        except requests.RequestException as exc:
            raise FetchFailed(f"the request failed ({type(exc).__name__})") from None
        if answer.status_code not in REDIRECTS:
            return Response(answer.status_code, answer.headers, url, answer)
        location = answer.headers.get("Location")
        answer.close()
        if not location:
            raise FetchFailed("a redirect without a Location", answer.status_code)
        url = urljoin(url, location)
    raise FetchRefused("too_many_redirects", f"more than {MAX_REDIRECTS} redirects")


def _refusal(exc: BaseException) -> FetchRefused | None:
    """The FetchRefused our connection class raised, from inside requests' wrapping."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, FetchRefused):
            return exc
        for arg in getattr(exc, "args", ()):
            if isinstance(arg, BaseException):
                found = _refusal(arg)
                if found:
                    return found
        exc = getattr(exc, "reason", None) or exc.__cause__ or exc.__context__
    return None


def retry_after(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("Retry-After", "")
    return float(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 6 else None
