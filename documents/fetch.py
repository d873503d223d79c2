"""Fetch a file from a URL someone else gave us, as hostile input.

Used for WhatsApp media: the provider's API hands us a URL, and the bytes behind it
are treated exactly like an upload's, with more checks on the way in:

- https only, unless the policy allows plain http;
- the host must end with one of the policy's allowed suffixes, on every redirect too
  (at most a few, each checked; credentials go only to the first host);
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
from typing import Iterator, Mapping
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

REDIRECTS = {301, 302, 303, 307, 308}
MAX_REDIRECTS = 3
CHUNK = 64 * 1024


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
class FetchPolicy:
    allowed_hosts: tuple[str, ...]           # host suffixes: "fbsbx.com" allows "a.fbsbx.com"
    allow_http: bool = False
    allowed_networks: tuple[str, ...] = ()   # CIDRs reachable although not global
    connect_timeout: float = 5.0
    read_timeout: float = 30.0

    def check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in (("https", "http") if self.allow_http else ("https",)):
            raise FetchRefused("scheme_refused", f"{parts.scheme or 'no'} scheme is not allowed")
        host = (parts.hostname or "").rstrip(".").lower()
        if not host or not any(host == suffix or host.endswith("." + suffix)
                               for suffix in self.allowed_hosts):
            raise FetchRefused("host_refused", "the URL's host is not in the allowlist")
        if parts.username or parts.password:
            raise FetchRefused("host_refused", "URLs with credentials are not fetched")

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

    Credentials (headers, auth) go to the first URL's host only, never to a host a
    redirect points at. FetchRefused for a policy breach, FetchFailed when the other
    side fails; any status is returned, for the caller to judge.
    """
    first_host = urlsplit(url).hostname
    for _ in range(MAX_REDIRECTS + 1):
        policy.check_url(url)
        same_host = urlsplit(url).hostname == first_host
        try:
            answer = session.get(url, headers=dict(headers or {}) if same_host else {},
                                 auth=auth if same_host else None, stream=True,
                                 allow_redirects=False,
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
