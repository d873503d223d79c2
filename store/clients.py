"""API clients: who calls the API, and who owns documents, imports and uploads.

Only a SHA-256 of each token is stored. The model lives in the kernel because the
domain packages name owners too (a WhatsApp source's media belong to a client);
bearer-token auth over HTTP is webapp/auth.py's.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from store.db import Base, UTCDateTime, utcnow

TOKEN_PREFIX = "slc_"
KNOWN_SCOPES = ("documents:read", "documents:write", "imports:write", "admin")


class ApiClient(Base):
    __tablename__ = "api_clients"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(Text(), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_client(session: Session, name: str, scopes: list[str]) -> tuple[ApiClient, str]:
    """Create a client and return it with its token, which is never stored."""
    unknown = set(scopes) - set(KNOWN_SCOPES)
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(sorted(unknown))}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    client = ApiClient(name=name, token_hash=hash_token(token), scopes=" ".join(sorted(scopes)))
    session.add(client)
    session.flush()
    return client, token


def active_client_id(session: Session, name: str) -> int | None:
    """The id of the unrevoked client called `name`, if there is one."""
    return session.scalar(select(ApiClient.id).where(ApiClient.name == name,
                                                     ApiClient.revoked_at.is_(None)))
