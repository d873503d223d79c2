"""A local HTTP server that answers like Meta's Graph API and Twilio's media API.

Graph: `GET /v21.0/{media_id}` with the bearer token answers the documented
`{messaging_product, url, mime_type, sha256, file_size, id}`; the URL (on this same
server, `/cdn/...`) needs the token too and carries a one-time key, so a URL that
has been used, or `expire_next_url`-ed, answers 404 as an expired Meta URL does.
Twilio: `GET /2010-04-01/Accounts/{sid}/Messages/{msid}/Media/{meid}` with basic
auth answers 302 to `/twilio-cdn/{meid}`, which serves the bytes.

Each item can lie about its size or hash, redirect somewhere, or be scripted to
answer 429 with Retry-After or 5xx first. Every request is recorded.
"""
from __future__ import annotations

import base64
import collections
import dataclasses
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

GRAPH_VERSION = "v21.0"


@dataclasses.dataclass
class Item:
    content: bytes
    mime_type: str
    reported_size: int | None = None     # what Graph says; None: the truth
    reported_sha256: str | None = None
    redirect_to: str | None = None       # the CDN answers 302 to this instead
    located_url: str | None = None       # Graph names this download URL instead of its CDN's
    delay: float = 0.0                   # seconds the CDN waits before it answers
    graph_script: collections.deque = dataclasses.field(default_factory=collections.deque)


class FakeMediaProviders:
    def __init__(self, token: str, twilio_sid: str = "", twilio_token: str = "",
                 host: str = "127.0.0.1"):
        self.token, self.twilio_sid, self.twilio_token = token, twilio_sid, twilio_token
        self.items: dict[str, Item] = {}
        self.keys: dict[str, str] = {}          # one-time CDN key -> media id
        self.expire_next_url: set[str] = set()  # media ids whose next URL is already dead
        self.requests: list[tuple[str, str | None]] = []
        self.bytes_served = collections.Counter()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                fake.requests.append((self.path, self.headers.get("Authorization")))
                fake.route(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.graph_base = f"{self.url}/{GRAPH_VERSION}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, media_id: str, content: bytes, mime_type: str, **lies) -> Item:
        self.items[media_id] = Item(content, mime_type, **lies)
        return self.items[media_id]

    def twilio_media_url(self, message_sid: str, media_sid: str) -> str:
        return (f"{self.url}/2010-04-01/Accounts/{self.twilio_sid}/Messages/{message_sid}"
                f"/Media/{media_sid}")

    def paths(self, prefix: str) -> list[str]:
        return [path for path, _ in self.requests if path.startswith(prefix)]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- routes ------------------------------------------------------------------------------

    def route(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        segments = parts.path.strip("/").split("/")
        auth = handler.headers.get("Authorization")
        if segments[0] == GRAPH_VERSION and len(segments) == 2:
            return self._graph(handler, segments[1], auth)
        if segments[0] == "cdn" and len(segments) == 2:
            return self._cdn(handler, segments[1], parse_qs(parts.query), auth)
        if segments[0] == "2010-04-01" and len(segments) == 7:
            return self._twilio(handler, segments, auth)
        if segments[0] == "twilio-cdn" and len(segments) == 2:
            item = self.items.get(segments[1])
            return self._bytes(handler, segments[1], item) if item else \
                self._json(handler, 404, {"message": "not found"})
        self._json(handler, 404, {"error": {"message": "no such route"}})

    def _graph(self, handler, media_id: str, auth: str | None) -> None:
        if auth != f"Bearer {self.token}":
            return self._json(handler, 401, {"error": {"message": "Invalid OAuth access token",
                                                       "type": "OAuthException", "code": 190}})
        item = self.items.get(media_id)
        if item is None:
            return self._json(handler, 404, {"error": {"message": "Unsupported get request",
                                                       "type": "GraphMethodException",
                                                       "code": 100}})
        if item.graph_script:
            status, headers = item.graph_script.popleft()
            return self._json(handler, status, {"error": {"message": "try later"}}, headers)
        key = secrets.token_hex(8)
        self.keys[key] = media_id
        if media_id in self.expire_next_url:
            self.expire_next_url.discard(media_id)
            self.keys.pop(key)
        self._json(handler, 200, {
            "messaging_product": "whatsapp", "id": media_id, "mime_type": item.mime_type,
            "url": item.located_url or f"{self.url}/cdn/{media_id}?key={key}",
            "sha256": item.reported_sha256 or hashlib.sha256(item.content).hexdigest(),
            "file_size": str(item.reported_size if item.reported_size is not None
                             else len(item.content))})

    def _cdn(self, handler, media_id: str, query: dict, auth: str | None) -> None:
        if auth != f"Bearer {self.token}":
            return self._json(handler, 401, {"error": {"message": "no token"}})
        key = (query.get("key") or [""])[0]
        if self.keys.pop(key, None) != media_id:  # used once, or never issued: expired
            return self._json(handler, 404, {"error": {"message": "URL expired"}})
        item = self.items[media_id]
        if item.redirect_to:
            handler.send_response(302)
            handler.send_header("Location", item.redirect_to)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        self._bytes(handler, media_id, item)

    def _twilio(self, handler, segments: list[str], auth: str | None) -> None:
        expected = "Basic " + base64.b64encode(
            f"{self.twilio_sid}:{self.twilio_token}".encode()).decode()
        if segments[2] != self.twilio_sid or auth != expected:
            return self._json(handler, 401, {"code": 20003, "message": "Authenticate"})
        media_sid = segments[6]
        if media_sid not in self.items:
            return self._json(handler, 404, {"code": 20404, "message": "not found"})
        handler.send_response(302)
        handler.send_header("Location", self.items[media_sid].redirect_to
                            or f"{self.url}/twilio-cdn/{media_sid}")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def _bytes(self, handler, media_id: str, item: Item) -> None:
        time.sleep(item.delay)
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", item.mime_type)
            handler.send_header("Content-Length", str(len(item.content)))
            handler.end_headers()
            for start in range(0, len(item.content), 64 * 1024):
                handler.wfile.write(item.content[start:start + 64 * 1024])
                self.bytes_served[media_id] += min(64 * 1024, len(item.content) - start)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: a cap did its work

    @staticmethod
    def _json(handler, status: int, body: dict, headers: dict | None = None) -> None:
        payload = json.dumps(body).encode()
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
