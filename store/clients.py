"""API clients: who calls the API, and who owns documents, imports and uploads.

Only a SHA-256 of each token is stored. The model lives in the kernel because the
domain packages name owners too (a WhatsApp source's media belong to a client);
bearer-token auth over HTTP is webapp/auth.py's.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import Integer, String, Text, delete, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from store.db import Base, UTCDateTime, utcnow

TOKEN_PREFIX = "slc_"
KNOWN_SCOPES = ("documents:read", "documents:write", "imports:write", "payments:read",
                "messages:read", "webhooks:read", "destinations:write", "admin")


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


class ClientNotFound(LookupError):
    pass


def client_id_named(session: Session, name: str) -> int | None:
    return session.scalar(select(ApiClient.id).where(ApiClient.name == name))


def client_exists(session: Session, client_id: int) -> bool:
    return session.get(ApiClient, client_id) is not None


def all_clients(session: Session) -> list[ApiClient]:
    return list(session.scalars(select(ApiClient).order_by(ApiClient.id)))


def client_names(session: Session, client_ids: set[int]) -> dict[int, str]:
    """{id: name} for the given clients (for showing owners beside their rows)."""
    if not client_ids:
        return {}
    return dict(session.execute(select(ApiClient.id, ApiClient.name)
                                .where(ApiClient.id.in_(client_ids))).all())


def revoke_client(session: Session, name: str) -> tuple[ApiClient, bool]:
    """Revoke the client called `name`: its tokens, download links and console sessions
    end at once. (the client, False) if it was revoked already; the caller commits."""
    client = session.scalar(select(ApiClient).where(ApiClient.name == name))
    if client is None:
        raise ClientNotFound(name)
    if client.revoked_at is not None:
        return client, False
    client.revoked_at = utcnow()
    return client, True


def active_client_id(session: Session, name: str) -> int | None:
    """The id of the unrevoked client called `name`, if there is one."""
    return session.scalar(select(ApiClient.id).where(ApiClient.name == name,
                                                     ApiClient.revoked_at.is_(None)))


class OpsSession(Base):
    """A console sign-in, ended by signing out, by its lifetime, or by revoking its client.

    The console's cookie carries only the session's id, signed; the row is what makes
    it valid, so signing out ends it on the server and a copied cookie dies with it.
    Only a SHA-256 of the id is stored.
    """
    __tablename__ = "ops_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[int] = mapped_column(Integer(), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


def open_ops_session(session: Session, client_id: int, lifetime: dt.timedelta) -> str:
    """A new console session for the client; its id, which is never stored. The
    client's lapsed sessions go at the same time, so the table stays small."""
    now = utcnow()
    session.execute(delete(OpsSession).where(OpsSession.client_id == client_id,
                                             OpsSession.expires_at < now))
    session_id = secrets.token_urlsafe(32)
    session.add(OpsSession(id_hash=hash_token(session_id), client_id=client_id,
                           created_at=now, expires_at=now + lifetime))
    session.flush()
    return session_id


def ops_session_client(session: Session, session_id: str) -> ApiClient | None:
    """The unrevoked client of a live console session, or None."""
    return session.scalar(select(ApiClient).join(
        OpsSession, OpsSession.client_id == ApiClient.id).where(
        OpsSession.id_hash == hash_token(session_id), OpsSession.ended_at.is_(None),
        OpsSession.expires_at > utcnow(), ApiClient.revoked_at.is_(None)))


def end_ops_session(session: Session, session_id: str) -> None:
    session.execute(update(OpsSession).where(OpsSession.id_hash == hash_token(session_id))
                    .values(ended_at=utcnow()))
