"""Bearer-token auth for API clients (store/clients.py).

Lookup is a single indexed equality on the token's SHA-256, so an unknown token and
a wrong one take the same path.

A failed attempt spends two budgets of AUTH_FAILURE_LIMIT each: one per client
address (as ProxyFix sees it, so behind a front TRUSTED_PROXY_COUNT must be set, or
every client shares the front's address) and one per presented token. Past either,
bad tokens get 429. A valid token is checked first and never meets them, so one
misconfigured client behind the same address locks out only bad tokens, never
everyone; and a token is 256 random bits, so the budgets limit noise, not guessing.
"""
from __future__ import annotations

import functools

from flask import current_app, g, request
from flask_limiter.util import get_remote_address
from sqlalchemy import select
from sqlalchemy.orm import Session

from store.clients import KNOWN_SCOPES, TOKEN_PREFIX, ApiClient, create_client, hash_token
from store.db import act_for
from webapp.errors import APIError
from webapp.extensions import db
from webapp.rate_limits import Budget

__all__ = ["KNOWN_SCOPES", "TOKEN_PREFIX", "ApiClient", "authenticate", "create_client",
           "demand_scopes", "owned_or_404", "require_scopes"]


def authenticate(session: Session, token: str) -> ApiClient | None:
    return session.scalar(select(ApiClient).where(
        ApiClient.token_hash == hash_token(token), ApiClient.revoked_at.is_(None)))


def checked_token(token: str) -> ApiClient | None:
    """The active client holding `token`; for any other token, spend the failure
    budgets first (OverBudget, a 429, past either)."""
    client = authenticate(db.session, token) if token else None
    if client is None:
        _spend_failure(token)
    return client


def _spend_failure(token: str) -> None:
    def limit() -> str:
        return current_app.config["AUTH_FAILURE_LIMIT"]

    Budget("auth-failures-address", limit, get_remote_address).spend()
    if token:
        Budget("auth-failures-token", limit, lambda: hash_token(token)[:32]).spend()


def _unauthorized(code: str, message: str) -> APIError:
    return APIError(401, code, message, {"WWW-Authenticate": 'Bearer realm="sluice"'})


def require_scopes(*scopes: str):
    """Demand a valid bearer token carrying every one of `scopes`; sets g.client."""
    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                _spend_failure("")
                raise _unauthorized("missing_token", "A bearer token is required.")
            client = checked_token(token.strip())
            if client is None:
                raise _unauthorized("invalid_token", "The bearer token is not valid.")
            g.client = client
            demand_scopes(*scopes)
            act_for_client(client)
            return view(*args, **kwargs)
        return wrapper
    return decorator


def act_for_client(client) -> None:
    """The rest of the request acts for the client's own rows only (row-level security
    on PostgreSQL, webapp/extensions.py), unless it is an admin, which acts for all."""
    if "admin" in client.scope_set:
        return
    g.acting_owner = client.id
    if db.session.in_transaction():  # the token lookup's transaction: from now on too
        act_for(db.session.connection(), client.id)


def demand_scopes(*scopes: str) -> None:
    """403 unless the authenticated client (g.client) holds every one of `scopes`: for
    a route whose methods need different scopes."""
    missing = set(scopes) - g.client.scope_set
    if missing:
        raise APIError(403, "insufficient_scope",
                       f"This token lacks the scope: {', '.join(sorted(missing))}.")


def owned_or_404(model, object_id: int, noun: str, for_update: bool = False):
    """The caller's own row of `model`; another owner's id looks exactly like a missing
    one. `for_update`: locked until the transaction ends (a write that checked it)."""
    query = select(model).where(model.id == object_id, model.owner_id == g.client.id)
    row = db.session.scalar(query.with_for_update() if for_update else query)
    if row is None:
        raise APIError(404, "not_found", f"No such {noun}.")
    return row
