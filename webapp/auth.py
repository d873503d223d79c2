"""Bearer-token auth for API clients (store/clients.py).

Lookup is a single indexed equality on the token's SHA-256, so an unknown token and
a wrong one take the same path.
"""
from __future__ import annotations

import functools

from flask import current_app, g, request
from flask_limiter.util import get_remote_address
from sqlalchemy import select
from sqlalchemy.orm import Session

from store.clients import KNOWN_SCOPES, TOKEN_PREFIX, ApiClient, create_client, hash_token
from webapp.errors import APIError
from webapp.extensions import db, limiter

__all__ = ["KNOWN_SCOPES", "TOKEN_PREFIX", "ApiClient", "authenticate", "create_client",
           "owned_or_404", "require_scopes"]


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
