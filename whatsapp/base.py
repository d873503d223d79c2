"""What a WhatsApp provider declares: how to read its notifications, and how to find
the bytes of a media item it announced.

A provider module (meta.py, twilio.py) declares one `WhatsAppProvider`, with the
signature scheme its deliveries carry: its whole wire format in one place. Its reader
turns a verified payload into plain `Inbound` messages and `StatusUpdate`s, taking
identifiers only when they can be stored as sent; the shared code in
`whatsapp/__init__.py` stores them. Its locator tells the media pipeline
where to download an item from and with which credentials.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Mapping

from store.signatures import Scheme

if TYPE_CHECKING:  # the web never fetches media, and must not load requests for it
    import requests

    from store.fetch import FetchPolicy


@dataclasses.dataclass(frozen=True)
class MediaItem:
    ref: str                    # the provider's handle: a media id, or a media URL
    kind: str                   # image, document, audio, video, sticker
    mime_type: str | None
    filename: str | None        # what the sender called it, if anything


@dataclasses.dataclass(frozen=True)
class Inbound:
    wamid: str
    phone: str | None
    message_type: str | None
    text: str | None
    sent_at: Any
    media: tuple[MediaItem, ...] = ()


@dataclasses.dataclass(frozen=True)
class StatusUpdate:
    wamid: str
    status: str
    at: Any
    phone: str | None
    errors: list | None = None


@dataclasses.dataclass(frozen=True)
class Notification:
    messages: tuple[Inbound, ...] = ()
    statuses: tuple[StatusUpdate, ...] = ()


@dataclasses.dataclass(frozen=True)
class Located:
    """Where an item's bytes are, and what the provider says about them."""
    url: str
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    auth: tuple[str, str] | None = dataclasses.field(default=None, repr=False)
    size: int | None = None          # as reported, checked before downloading
    sha256: str | None = None        # hex, as reported, checked after
    mime_type: str | None = None


class MediaExpired(Exception):
    """The provider no longer has the item (Meta keeps media ids for 7 days)."""


class MediaFailed(Exception):
    """The item cannot be fetched, and trying again will not help; `code` says why."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(frozen=True)
class Fetcher:
    """What a locator may use: the source's media settings, the guarded session,
    and the policy for calls to the provider's own API."""
    settings: Any                    # whatsapp.settings.MediaSettings
    session: "requests.Session"
    api_policy: "FetchPolicy"


@dataclasses.dataclass(frozen=True)
class WhatsAppProvider:
    name: str
    # the stored body -> the payload `read` takes, or PayloadError
    parse: Callable[[bytes], Any]
    read: Callable[[Any], Notification]
    # (fetcher, item ref) -> Located, or MediaExpired / MediaFailed / FetchFailed
    locate: Callable[[Fetcher, str], Located]
    # host suffixes its media URLs live under, unless the source names its own
    media_hosts: tuple[str, ...]
    # a download answered with one of these may have a URL that expired: locate again
    refresh_on: frozenset[int] = frozenset()
    # a download answered with one of these means the item is gone for good
    gone_on: frozenset[int] = frozenset()
    scheme: "Scheme" = None  # required: how its deliveries are signed (store/signatures.py)
    # The source keys its media credentials come from, and how they are read: (the
    # source's media keys, its secrets, the environment) -> whatsapp.settings.
    # MediaCredentials, or ValueError naming what is missing.
    media_keys: tuple[str, ...] = ()
    media_credentials: Callable[..., Any] = None

    def __post_init__(self):
        if self.scheme is None or self.scheme.name != self.name:
            raise TypeError(f"WhatsApp provider {self.name}: declare its scheme, of its name")
        if not callable(self.media_credentials):
            raise TypeError(f"WhatsApp provider {self.name}: declare media_credentials")
