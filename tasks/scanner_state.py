"""What the workers' scanner and OCR say, for the web: clamd and tesseract are the
workers' dependencies.

Web hosts need no clamd, so they cannot ask it whether it is up or how old its
signatures are. Every worker's gauge thread (`tasks.queue_gauge`) asks its own
CLAMD_URL each QUEUE_DEPTH_INTERVAL and keeps the answer in Redis for a few
intervals, as it does the queue depths; the console's overview and the
`sluice_clamd_signatures_age_seconds` gauge read it from there. When no worker has
reported lately the state is `unknown`. OCR is reported the same way, under its own
key, by the workers that consume the `enrich` queue (those that read documents' text).

This module imports neither Celery nor kombu; the web imports it.
"""
from __future__ import annotations

import json
import logging
import time

import redis

log = logging.getLogger(__name__)

KEY = "scanner"
OCR_KEY = "ocr"
INTERVALS_KEPT = 3
UNKNOWN = {"status": "unknown",
           "detail": "no worker has reported on it lately (is a worker running?)"}


def measure(clamd_url: str | None, timeout: float) -> dict:
    """The worker's scanner: ok with clamd's VERSION reply, down, or missing."""
    if not clamd_url:
        return {"status": "missing",
                "detail": "CLAMD_URL is not set on the workers: documents stay pending_scan"}
    from documents.scanner import client_from_url  # the worker's own dependency

    try:
        return {"status": "ok", "version": client_from_url(clamd_url, timeout=timeout).version()}
    except Exception as exc:  # clamd away, or answering nonsense
        return {"status": "down", "error": type(exc).__name__}


def measure_ocr(languages: str) -> dict:
    """The worker's OCR: ok (tesseract has every language of OCR_LANGUAGES), or missing
    (no tesseract: images end `skipped`; or a language pack is not installed)."""
    from documents.text.sandbox import installed_languages  # the worker's own dependency

    installed = installed_languages()
    if installed is None:
        return {"status": "missing", "detail": "tesseract is not installed on the workers: "
                "images are not read (text_status skipped)"}
    wanted = [code for code in languages.split("+") if code]
    absent = [code for code in wanted if code not in installed]
    if absent:
        return {"status": "missing", "detail": "tesseract lacks the language pack(s) "
                f"{', '.join(absent)} of OCR_LANGUAGES"}
    return {"status": "ok", "languages": wanted}


def record(client: redis.Redis, prefix: str, state: dict, interval: float,
           key: str = KEY) -> None:
    client.set(prefix + key, json.dumps({**state, "at": time.time()}),
               px=int(1000 * max(interval * INTERVALS_KEPT, 1)))


def recorded(client: redis.Redis, prefix: str, key: str = KEY) -> dict:
    """What a worker last said of its scanner (with `version` when it answered) or of
    its OCR (`key=OCR_KEY`), or UNKNOWN when none has lately or Redis does not answer."""
    try:
        raw = client.get(prefix + key)
    except redis.RedisError:
        log.warning("worker state unavailable: Redis did not answer", extra={"state": key})
        return dict(UNKNOWN)
    return json.loads(raw) if raw else dict(UNKNOWN)
