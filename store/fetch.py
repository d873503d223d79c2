"""Fetch a file from a URL someone else gave us, as hostile input.

Used for WhatsApp media (the provider's API hands us a URL, and the bytes behind it
are treated exactly like an upload's), for deliveries to destinations, and for
PayPal's signing certificates, with these checks on the way:

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

The rules themselves are in store/fetch_policy.py. requests and urllib3 do the
HTTP; the one hook is the connection class, which checks
the peer address before a byte is sent (urllib3 has no option for it).
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Mapping
from urllib.parse import urljoin

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

# the rules, apart so that checking a URL loads no HTTP client; imported from here too
from store.fetch_policy import (  # noqa: F401
    FetchFailed,
    FetchPolicy,
    FetchRefused,
    Origin,
    origin_of,
)

REDIRECTS = {301, 302, 303, 307, 308}
MAX_REDIRECTS = 3
CHUNK = 64 * 1024


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
        answer = _send(session, policy, here, requests.Request(
            "GET", url, headers=dict(headers or {}) if same_origin else {},
            auth=auth if same_origin else None))
        if answer.status_code not in REDIRECTS:
            return Response(answer.status_code, answer.headers, url, answer)
        location = answer.headers.get("Location")
        answer.close()
        if not location:
            raise FetchFailed("a redirect without a Location", answer.status_code)
        url = urljoin(url, location)
    raise FetchRefused("too_many_redirects", f"more than {MAX_REDIRECTS} redirects")


def post(session: requests.Session, policy: FetchPolicy, url: str, body: bytes,
         headers: Mapping[str, str], cap: int) -> tuple[int, bytes]:
    """POST `body` to `url` under `policy`: (status, at most `cap` bytes of the answer).

    A redirect is not followed (its status is returned: the caller's failure to judge),
    so a URL that passed the checks cannot send the body anywhere else. FetchRefused
    for a policy breach, FetchFailed when the other side fails."""
    answer = _send(session, policy, policy.check_url(url),
                   requests.Request("POST", url, data=body, headers=dict(headers)))
    kept, seen = [], 0
    try:
        for chunk in answer.iter_content(CHUNK):
            kept.append(chunk[:cap - seen])
            seen += len(chunk)
            if seen >= cap:
                break  # the rest is never read: the connection is dropped, not reused
    except requests.RequestException as exc:
        raise FetchFailed(f"reading the answer failed ({type(exc).__name__})",
                          answer.status_code) from None
    finally:
        answer.close()
    return answer.status_code, b"".join(kept)


def _send(session: requests.Session, policy: FetchPolicy, checked: Origin,
          request: requests.Request) -> requests.Response:
    """Send one request, never following a redirect; the body is not read yet."""
    prepared = session.prepare_request(request)
    if policy.check_url(prepared.url) != checked:  # what is sent is what was checked
        raise FetchRefused("url_refused", "the URL changes when prepared")
    try:
        return session.send(prepared, stream=True, allow_redirects=False,
                            timeout=(policy.connect_timeout, policy.read_timeout))
    except requests.ConnectionError as exc:
        refused = _refusal(exc)
        if refused is not None:
            raise refused from None
        raise FetchFailed(f"could not connect ({type(exc).__name__})") from None
    except requests.RequestException as exc:
        raise FetchFailed(f"the request failed ({type(exc).__name__})") from None


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
