"""API clients and bearer-token auth.

Only a SHA-256 of each token is stored. Lookup is a single indexed equality on
that hash, so an unknown token and a wrong one take the same path.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets

from flask import current_app, g, request
from flask_limiter.util import get_remote_address
from sqlalchemy import Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from webapp.errors import APIError
from webapp.extensions import db, limiter
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


def authenticate(session: Session, token: str) -> ApiClient | None:
    return session.scalar(select(ApiClient).where(
        ApiClient.token_hash == hash_token(token), ApiClient.revoked_at.is_(None)))


def _unauthorized(code: str, message: str) -> APIError:
    return APIError(401, code, message, {"WWW-Authenticate": 'Bearer realm="sluice"'})


def require_scopes(*scopes: str):
    """Demand a valid bearer token carrying every one of `scopes`; sets g.client."""
    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise _unauthorized("missing_token", "A bearer token is required.")
            client = authenticate(db.session, token.strip())
            if client is None:
                raise _unauthorized("invalid_token", "The bearer token is not valid.")
            missing = set(scopes) - client.scope_set
            if missing:
                raise APIError(403, "insufficient_scope",
                               f"This token lacks the scope: {', '.join(sorted(missing))}.")
            g.client = client
            return view(*args, **kwargs)
        # Failed authentication spends one per-IP budget shared by every bearer
        # route, so guessing tokens is slow; successful calls never spend it.
        return limiter.shared_limit(
            lambda: current_app.config["AUTH_FAILURE_LIMIT"], scope="bearer-auth-failures",
            key_func=get_remote_address,
            deduct_when=lambda response: response.status_code == 401)(wrapper)
    return decorator


def owned_or_404(model, object_id: int, noun: str):
    """The caller's own row of `model`; another owner's id looks exactly like a missing one."""
    row = db.session.scalar(select(model).where(model.id == object_id,
                                                model.owner_id == g.client.id))
    if row is None:
        raise APIError(404, "not_found", f"No such {noun}.")
    return row
