"""Fetch a WhatsApp media item into the document pipeline, trusted no more than an upload.

For one `pending` item: ask its provider where the bytes are (Meta's Graph API, or
Twilio's media URL), refuse what the source's caps say is too large before reading a
byte, download through the guarded fetcher (store/fetch.py: allowlisted hosts
and networks, every redirect checked, timeouts, a byte cap while reading) into the
same hashing spool as an upload, check the hash the provider reported, and hand the
file to the same ingest: sniffing, the allowlist, per-owner dedup, storage, the scan.

Outcomes: `fetched` (with the document), `expired` (the provider no longer has it),
or `failed` with a code. A provider or network that fails for now raises FetchFailed
or TryLater, for the task's retries.
"""
from __future__ import annotations

import contextlib
import dataclasses
import mimetypes
import secrets
import time
from typing import Any, Iterator, Mapping

import redis
from sqlalchemy.orm import Session

from documents.ingest import HashingSpool, Spooled, TooLarge, create_document
from documents.sniffing import Rejected
from documents.storage import BlobStorage
from store import audit, fetch
from store.clients import active_client_id
from store.fetch import FetchPolicy, FetchRefused
from whatsapp import PROVIDERS
from whatsapp.base import Fetcher, Located, MediaExpired, MediaFailed, WhatsAppProvider
from whatsapp.media import finish
from whatsapp.models import (
    MEDIA_EXPIRED,
    MEDIA_FAILED,
    MEDIA_FETCHED,
    MEDIA_PENDING,
    WhatsAppMedia,
)
from whatsapp.settings import MediaSettings

SLOT_SECONDS = 600  # a holder that has not let go by then (its worker died) frees its slot


class TryLater(Exception):
    """Not now (every slot of the source is busy); try again in `countdown` seconds."""

    def __init__(self, message: str, countdown: float):
        super().__init__(message)
        self.countdown = countdown


@dataclasses.dataclass(frozen=True)
class MediaEnvironment:
    sources: Mapping[str, Any]        # the configured webhooks.sources.Source by name
    storage: BlobStorage
    redis_client: redis.Redis
    allowlist: tuple[str, ...]        # DOCUMENT_ALLOWED_TYPES, as for uploads
    key_prefix: str = ""
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    slot_wait: float = 10.0           # how long to wait for a busy source's free slot


def fetch_media(session: Session, env: MediaEnvironment, media_id: int) -> WhatsAppMedia | None:
    """Fetch one pending item and record the outcome; the caller commits. Safe to run
    twice: only a `pending` item is worked on, and the same bytes are one document.

    No transaction stays open while waiting for a slot or downloading (on SQLite it
    would hold the database's one write lock for as long): the attempt is committed
    once a slot is held, and the outcome recorded in a transaction of its own.
    """
    media = session.get(WhatsAppMedia, media_id)
    if media is None or media.status != MEDIA_PENDING:
        return None
    source = env.sources.get(media.source)
    if source is None or source.media is None or media.provider not in PROVIDERS:
        media.attempts += 1
        return finish(media, MEDIA_FAILED, "media_disabled",
                      "The source no longer fetches media.")
    owner_id = active_client_id(session, source.media.owner)
    if owner_id is None:
        media.attempts += 1
        return finish(media, MEDIA_FAILED, "owner_missing",
                      "The source's media_owner is not an active API client.")
    item = _Item(PROVIDERS[media.provider], media.kind, media.media_ref)
    session.rollback()
    with _slot(env, source) as held:
        if not held:
            raise TryLater("every media slot of the source is busy", countdown=5)
        media = session.get(WhatsAppMedia, media_id)
        if media is None or media.status != MEDIA_PENDING:
            return None  # another delivery of this fetch finished it meanwhile
        media.attempts += 1
        session.commit()
        try:
            spooled, located = _download(item, source.media, env)
        except MediaExpired:
            return finish(media, MEDIA_EXPIRED, "expired", "The provider no longer has it.")
        except (MediaFailed, FetchRefused) as exc:
            return finish(media, MEDIA_FAILED, exc.code, str(exc))
    if media.status != MEDIA_PENDING:  # read afresh: finished elsewhere during the download
        spooled.path.unlink(missing_ok=True)
        return None
    declared = media.mime_type or located.mime_type
    try:
        document, _created = create_document(session, env.storage, owner_id, spooled,
                                             _filename(media, declared), declared, env.allowlist)
    except Rejected as exc:
        return finish(media, MEDIA_FAILED, exc.code, str(exc))
    media.document_id = document.id
    audit.record(session, f"whatsapp:{source.name}", "whatsapp_media.fetched",
                 "whatsapp_media", media.id, {"document_id": document.id, "kind": media.kind})
    return finish(media, MEDIA_FETCHED)


@dataclasses.dataclass(frozen=True)
class _Item:
    """What a download needs of an item, read before its transaction ends."""
    provider: WhatsAppProvider
    kind: str
    ref: str


def _download(item: _Item, settings: MediaSettings,
              env: MediaEnvironment) -> tuple[Spooled, Located]:
    provider = item.provider
    cap = settings.max_bytes.get(item.kind, settings.max_bytes["document"])
    media_policy = _policy(settings, settings.allowed_hosts, env)
    api_policy = _policy(settings, (fetch.origin_of(settings.credentials.api_base).host,), env)
    fetcher = Fetcher(settings, fetch.session_for(api_policy), api_policy)
    downloads = fetch.session_for(media_policy)
    try:
        located = _located(provider, fetcher, item.ref, cap)
        for refreshed in (False, True):
            answer = fetch.get(downloads, media_policy, located.url, headers=located.headers,
                               auth=located.auth)
            if answer.status == 200:
                return _spool(answer, located, env.storage, cap), located
            answer.close()
            if answer.status in provider.refresh_on and not refreshed:
                located = _located(provider, fetcher, item.ref, cap)  # URLs expire
                continue
            if answer.status in provider.gone_on:
                raise MediaExpired(item.ref)
            if answer.status == 429 or answer.status >= 500:
                raise fetch.FetchFailed(f"the media URL answered {answer.status}",
                                        answer.status, fetch.retry_after(answer.headers))
            raise MediaFailed("download_refused", f"The media URL answered {answer.status}.")
        raise MediaFailed("download_refused", "The media URL kept refusing the download.")
    finally:
        downloads.close()
        fetcher.session.close()


def _located(provider: WhatsAppProvider, fetcher: Fetcher, ref: str, cap: int) -> Located:
    located = provider.locate(fetcher, ref)
    if located.size is not None and located.size > cap:  # never start that download
        raise MediaFailed("too_large", f"The provider reports {located.size} bytes; "
                                       f"the cap for this kind is {cap}.")
    return located


def _spool(answer: fetch.Response, located: Located, storage: BlobStorage, cap: int) -> Spooled:
    spool = HashingSpool(storage, cap)
    try:
        for chunk in answer.iter_bytes(cap):
            spool.write(chunk)
    except TooLarge:
        spool.discard()
        raise FetchRefused("too_large", f"The file exceeds {cap} bytes.") from None
    except BaseException:
        spool.discard()
        raise
    spooled = spool.finish()
    if located.sha256 and spooled.sha256 != located.sha256:
        spooled.path.unlink(missing_ok=True)
        raise MediaFailed("sha256_mismatch", "The bytes do not match the SHA-256 the "
                                             "provider reported.")
    return spooled


def _policy(settings: MediaSettings, hosts: tuple[str, ...], env: MediaEnvironment) -> FetchPolicy:
    return FetchPolicy(allowed_hosts=hosts, allow_http=settings.allow_http,
                       allowed_networks=settings.allowed_networks,
                       connect_timeout=env.connect_timeout, read_timeout=env.read_timeout)


def _filename(media: WhatsAppMedia, mime_type: str | None) -> str:
    if media.filename:
        return media.filename
    extension = mimetypes.guess_extension((mime_type or "").split(";")[0].strip()) or ""
    return f"{media.wamid}{extension}"


# Redis: at most `media_concurrency` fetches of one source at once, across every worker.
# A sorted set of holder tokens scored by when they lapse; a lapsed holder's slot is
# free again, so a worker that died mid-fetch cannot keep one for good.
_TAKE_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0
"""


def slot_key(prefix: str, source: str) -> str:
    return f"{prefix}media-slots:{source}"


@contextlib.contextmanager
def _slot(env: MediaEnvironment, source) -> Iterator[bool]:
    key, token = slot_key(env.key_prefix, source.name), secrets.token_hex(8)
    deadline, held = time.monotonic() + env.slot_wait, False
    while not held:
        now = time.time()
        held = bool(env.redis_client.eval(_TAKE_SLOT, 1, key, now, source.media.concurrency,
                                          now + SLOT_SECONDS, token, SLOT_SECONDS))
        if held or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    try:
        yield held
    finally:
        if held:
            env.redis_client.zrem(key, token)
