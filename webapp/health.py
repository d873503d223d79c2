"""Probes: /livez (process up), /startupz (config + schema), /readyz (dependencies)."""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from documents.scanner import client_from_url
from tasks.app_state import redis_client, storage
from webapp.extensions import db
from webapp.migrate import database_heads, script_heads

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/livez")
def livez():
    return jsonify(status="ok")


@bp.get("/startupz")
def startupz():
    try:
        current, expected = database_heads(db.session.connection()), script_heads()
    except Exception as exc:
        return _probe_failed("database", exc)
    finally:
        db.session.rollback()
    if current != expected:
        return jsonify(status="down", components={"migrations": {
            "status": "behind", "current": sorted(current), "expected": sorted(expected)}}), 503
    return jsonify(status="ok", components={"migrations": {"status": "ok",
                                                           "current": sorted(current)}})


def components() -> dict[str, dict]:
    """Each dependency's state, as /readyz and the console's overview show it."""
    return {"database": _check_database(), "redis": _check_redis(),
            "storage": _check_storage(), "clamd": _check_clamd()}


@bp.get("/readyz")
def readyz():
    components_ = components()
    if components_["database"]["status"] != "ok":
        status, code = "down", 503
    elif all(c["status"] == "ok" for c in components_.values()):
        status, code = "ok", 200
    else:
        status, code = "degraded", 200  # webhooks are still accepted without these
    return jsonify(status=status, components=components_), code


def _probe_failed(component: str, exc: Exception):
    return jsonify(status="down", components={
        component: {"status": "down", "error": type(exc).__name__}}), 503


def _check_database() -> dict:
    try:
        db.session.execute(text("SELECT 1"))
        return {"status": "ok"}
    except Exception as exc:
        return _down("database", exc)
    finally:
        db.session.rollback()


def _check_redis() -> dict:
    try:
        redis_client().ping()
        return {"status": "ok"}
    except Exception as exc:
        return _down("redis", exc)


def _check_storage() -> dict:
    try:
        blobs = storage()
        blobs.check()
        return {"status": "ok", "backend": blobs.name}
    except Exception as exc:
        return _down("storage", exc)


def _check_clamd() -> dict:
    url = current_app.config.get("CLAMD_URL")
    if not url:
        return {"status": "missing",
                "detail": "CLAMD_URL is not set: documents stay pending_scan"}
    try:
        scanner = client_from_url(url, timeout=current_app.config["HEALTH_CHECK_TIMEOUT"])
        scanner.ping()
        # States only: the version (and so the signature date) is for the metrics,
        # which the front keeps inside, not for anyone who can reach /readyz.
        return {"status": "ok"}
    except Exception as exc:
        return _down("clamd", exc)


def _down(component: str, exc: Exception) -> dict:
    log.warning("readiness check failed",
                extra={"component": component, "error": type(exc).__name__})
    return {"status": "down", "error": type(exc).__name__}
