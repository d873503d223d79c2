"""The guarded fetcher (store/fetch.py) against URLs built to make two parsers disagree.

Each hostile URL goes through the real requests session against a local listener that
records every request and every credential that reaches it. The policy lets loopback
through, as a public attacker host would be let through: only the URL checks stand
between the credentials and the listener.
"""
from __future__ import annotations

import pytest

from store import fetch
from store.fetch import FetchPolicy, FetchRefused
from tests.fakes.listener import Listener

TOKEN = "Bearer EAAG-graph-token-that-must-not-leak"
BASIC = ("AC0123456789abcdef0123456789abcdef", "twilio-auth-token-that-must-not-leak")


@pytest.fixture
def listener():
    one = Listener()
    yield one
    one.stop()


def policy(*hosts: str) -> FetchPolicy:
    return FetchPolicy(allowed_hosts=hosts, allow_http=True,
                       allowed_networks=("127.0.0.0/8",), connect_timeout=2, read_timeout=2)


def get(url: str, rules: FetchPolicy):
    session = fetch.session_for(rules)
    try:
        return fetch.get(session, rules, url, headers={"Authorization": TOKEN}, auth=BASIC)
    finally:
        session.close()


HOSTILE = [
    "http://localhost\\.fbcdn.net:{port}/LEAK",          # the reported bypass
    "http://127.0.0.1\\.fbcdn.net:{port}/LEAK",
    "http://localhost\\@fbcdn.net:{port}/LEAK",
    "http://localhost:{port}\\.fbcdn.net/LEAK",
    "http://local\thost.fbcdn.net:{port}/LEAK",          # tab inside the host
    "http://localhost\n.fbcdn.net:{port}/LEAK",          # newline inside the host
    "http://localhost .fbcdn.net:{port}/LEAK",
    "http://localhost%5C.fbcdn.net:{port}/LEAK",         # the backslash, percent-encoded
    "http://localhost%5c.fbcdn.net:{port}/LEAK",
    "http://localhost%2efbcdn.net:{port}/LEAK",
    "http://fbcdn.net@localhost:{port}/LEAK",            # userinfo
    "http://fbcdn.net:pw@127.0.0.1:{port}/LEAK",
    "http://@localhost:{port}/LEAK",
    "http://localhost\uff3c.fbcdn.net:{port}/LEAK",      # fullwidth backslash (NFKC: \\)
    "http://localhost\u3002fbcdn.net:{port}/LEAK",       # ideographic full stop (IDNA: .)
    "http://l\u043ecalhost.fbcdn.net:{port}/LEAK",       # Cyrillic o
    "http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54:{port}/LEAK",  # fullwidth
    "http://localhost\u200b.fbcdn.net:{port}/LEAK",      # zero-width space
]


@pytest.mark.parametrize("template", HOSTILE)
def test_a_url_parsers_disagree_on_is_refused_and_nothing_reaches_the_listener(
        listener, template):
    with pytest.raises(FetchRefused) as refused:
        get(template.format(port=listener.port), policy("fbcdn.net"))
    assert refused.value.code in {"url_refused", "host_refused"}
    assert listener.seen == []


def test_the_listener_does_record_a_fetch_the_policy_allows(listener):
    # The control: the same listener, reached through an allowed name, sees the request.
    answer = get(f"http://localhost:{listener.port}/ok", policy("localhost"))
    assert answer.status == 200
    answer.close()
    [(path, credential)] = listener.seen
    assert path == "/ok" and credential.startswith("Basic ")


@pytest.mark.parametrize("suffix", ["calhost", "host", "127.0.0.1"])
def test_a_suffix_must_match_whole_labels_and_an_address_exactly(listener, suffix):
    with pytest.raises(FetchRefused):
        get(f"http://localhost:{listener.port}/x" if suffix != "127.0.0.1"
            else f"http://1.127.0.0.1:{listener.port}/x", policy(suffix))
    assert listener.seen == []


def test_credentials_go_only_to_the_first_urls_exact_origin():
    # The same host name on another port is another origin (another server, maybe
    # another tenant's): it gets the request, never the credentials.
    other = Listener()
    first = Listener(redirect_to=f"http://localhost:{other.port}/moved")
    try:
        answer = get(f"http://localhost:{first.port}/media", policy("localhost"))
        assert answer.status == 200
        answer.close()
        assert [(path, bool(credential)) for path, credential in first.seen] == [
            ("/media", True)]
        assert other.seen == [("/moved", None)]
    finally:
        first.stop()
        other.stop()


def test_a_redirect_to_a_hostile_url_is_refused_before_it_is_followed():
    other = Listener()
    first = Listener(redirect_to=f"http://localhost\\.fbcdn.net:{other.port}/LEAK")
    try:
        with pytest.raises(FetchRefused):
            get(f"http://localhost:{first.port}/media", policy("localhost", "fbcdn.net"))
        assert other.seen == []
    finally:
        first.stop()
        other.stop()


@pytest.mark.parametrize("url, origin", [
    ("https://Lookaside.FBSBX.com./a?b", ("https", "lookaside.fbsbx.com", 443)),
    ("http://127.0.0.1:8080/x", ("http", "127.0.0.1", 8080)),
    ("https://[::1]/x", ("https", "[::1]", 443)),
])
def test_the_origin_is_what_urllib3_connects_to(url, origin):
    found = fetch.origin_of(url)
    assert (found.scheme, found.host, found.port) == origin
